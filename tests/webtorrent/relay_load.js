// Load generator for a WebSocket tracker's relay path: CLIENTS sockets in one
// swarm, each announcing with OFFERS offers (a 500-byte SDP), the next as soon
// as the reply to the last one comes (closed loop); a browser sent an offer
// answers it. Counts, between WARMUP and WARMUP + SECONDS, announce replies,
// offers received and answers received; prints them as one JSON line.
//
//   node relay_load.js ws://127.0.0.1:PORT [CLIENTS] [SECONDS] [WARMUP] [OFFERS]
'use strict'

const WebSocket = require('ws')

const url = process.argv[2]
const clients = Number(process.argv[3] || 200)
const seconds = Number(process.argv[4] || 10)
const warmup = Number(process.argv[5] || 2)
const offersPerAnnounce = Number(process.argv[6] || 1)
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
    offers.push({ offer: { type: 'offer', sdp: SDP }, offer_id: String(serial++).padStart(20, '0') })
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
      if (measuring) counts.offers++
      socket.send(JSON.stringify({ action: 'announce', info_hash: INFO_HASH, peer_id: peerId,
        to_peer_id: message.peer_id, offer_id: message.offer_id,
        answer: { type: 'answer', sdp: SDP } }))
    } else if (message.answer) {
      if (measuring) counts.answers++
    } else if (message.complete !== undefined) {
      if (measuring) counts.announces++
      announce(socket, peerId)
    }
  })
  return socket
}

const sockets = []
for (let n = 0; n < clients; n++) sockets.push(start(n))
setTimeout(() => { measuring = true }, warmup * 1000)
setTimeout(() => {
  measuring = false
  console.log(JSON.stringify(Object.assign({ clients, seconds }, counts)))
  for (const socket of sockets) socket.terminate()
  setTimeout(() => process.exit(0), 100)
}, (warmup + seconds) * 1000)
