// Load generator for a WebSocket tracker's relay path: CLIENTS sockets in one
// swarm, each announcing with OFFERS offers (a 500-byte SDP), the next as soon
// as the reply to the last one comes (closed loop); a browser sent an offer
// answers it. Counts, between WARMUP and WARMUP + SECONDS, announce replies,
// offers received and answers received; prints them as one JSON line. With
// RATE, announces go out at RATE a second in all (open loop) instead, and the
// line has the relay's latency: from an announce sent to its offer received
// by the other browser (one process, one clock), p50 and p99 in ms.
//
//   node relay_load.js ws://127.0.0.1:PORT [CLIENTS] [SECONDS] [WARMUP] [OFFERS] [RATE]
'use strict'

const WebSocket = require('ws')

const url = process.argv[2]
const clients = Number(process.argv[3] || 200)
const seconds = Number(process.argv[4] || 10)
const warmup = Number(process.argv[5] || 2)
const offersPerAnnounce = Number(process.argv[6] || 1)
const rate = Number(process.argv[7] || 0)
const latencies = []
const INFO_HASH = 'i'.repeat(20)
const SDP = 'v=0\r\n' + 'a=candidate:1 1 udp 2122260223 198.18.0.1 50000 typ host\r\n'.repeat(8)

const counts = { announces: 0, offers: 0, answers: 0 }
let measuring = false
let serial = 0

function binaryId (n) {
  return ('-LD0001-' + String(n).padStart(12, '0')).slice(0, 20)
}

function announce (socket, peerId) {
  const offers = []
  for (let i = 0; i < offersPerAnnounce; i++) {
    offers.push({ offer: { type: 'offer', sdp: SDP, sent: performance.now() },
      offer_id: String(serial++).padStart(20, '0') })
  }
  socket.send(JSON.stringify({ action: 'announce', info_hash: INFO_HASH, peer_id: peerId,
    uploaded: 0, downloaded: 0, left: 1000, numwant: offersPerAnnounce, offers }))
}

function start (n) {
  const peerId = binaryId(n)
  const socket = new WebSocket(url, { perMessageDeflate: false })
  socket.on('open', () => announce(socket, peerId))
  socket.on('error', () => {})
  socket.on('message', data => {
    const message = JSON.parse(data)
    if (message.offer) {
      if (measuring) {
        counts.offers++
        if (rate) latencies.push(performance.now() - message.offer.sent)
      }
      socket.send(JSON.stringify({ action: 'announce', info_hash: INFO_HASH, peer_id: peerId,
        to_peer_id: message.peer_id, offer_id: message.offer_id,
        answer: { type: 'answer', sdp: SDP } }))
    } else if (message.answer) {
      if (measuring) counts.answers++
    } else if (message.complete !== undefined) {
      if (measuring) counts.announces++
      if (!rate) announce(socket, peerId)
    }
  })
  return socket
}

const sockets = []
const ids = []
for (let n = 0; n < clients; n++) {
  sockets.push(start(n))
  ids.push(binaryId(n))
}
if (rate) {
  // Open loop: every millisecond, the announces due by now, round robin.
  let sent = 0
  let turn = 0
  const began = performance.now()
  setInterval(() => {
    const due = Math.floor((performance.now() - began) * rate / 1000)
    for (; sent < due; sent++) {
      const n = turn++ % clients
      if (sockets[n].readyState === WebSocket.OPEN) announce(sockets[n], ids[n])
    }
  }, 1)
}
setTimeout(() => { measuring = true }, warmup * 1000)
setTimeout(() => {
  measuring = false
  latencies.sort((x, y) => x - y)
  const at = q => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : null
  console.log(JSON.stringify(Object.assign({ clients, seconds, rate, p50_ms: at(0.5), p99_ms: at(0.99) }, counts)))
  for (const socket of sockets) socket.terminate()
  setTimeout(() => process.exit(0), 100)
}, (warmup + seconds) * 1000)
