// Two bittorrent-tracker (v9) WebSocket clients against a tracker, as WebTorrent
// uses them: announce, offers reaching the other client, answers relayed back,
// scrape of one and of several hashes, completed, stop. Prints one JSON line of
// what each step observed; tests/test_ws_e2e.py asserts on it.
//
//   node tracker_client.js ws://127.0.0.1:PORT [http://127.0.0.1:HTTP_PORT]
//
// With the HTTP door's address, the swarm is also scraped there while both
// browsers are in it (browsers count for every door).
'use strict'

const Client = require('bittorrent-tracker')
const http = require('http')
const wrtc = require('@roamhq/wrtc')

const url = process.argv[2]
const httpBase = process.argv[3]
const INFO_HASH = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678'
const OTHER_HASH = '00112233445566778899aabbccddeeff00112233'
const STEP_TIMEOUT_MS = 15000

function makeClient (peerId) {
  const client = new Client({
    infoHash: INFO_HASH,
    peerId,
    port: 6881, // required by the client; a WebSocket tracker does not use it
    announce: [url],
    wrtc,
    getAnnounceOpts: () => ({ numwant: 2 })
  })
  client.warnings = []
  client.on('warning', err => client.warnings.push(err.message))
  client.on('error', err => client.warnings.push('error: ' + err.message))
  client.peers = []
  client.on('peer', peer => {
    // From a relayed offer: this client answers (not the initiator); from a
    // relayed answer: this client made the offer (the initiator).
    client.peers.push({ id: peer.id, initiator: peer.initiator })
    peer.on('error', () => {})
  })
  return client
}

function next (client, event, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for ' + what)), STEP_TIMEOUT_MS)
    client.once(event, data => { clearTimeout(timer); resolve(data) })
  })
}

function until (check, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const poll = setInterval(() => {
      if (check()) { clearInterval(poll); resolve() } else if (Date.now() - started > STEP_TIMEOUT_MS) {
        clearInterval(poll)
        reject(new Error('timed out waiting for ' + what))
      }
    }, 20)
  })
}

function scrapeMany (client, hashes) {
  const seen = {}
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a scrape')), STEP_TIMEOUT_MS)
    const onScrape = data => {
      seen[data.infoHash] = { complete: data.complete, incomplete: data.incomplete, downloaded: data.downloaded }
      if (Object.keys(seen).length === hashes.length) {
        clearTimeout(timer)
        client.removeListener('scrape', onScrape)
        resolve(seen)
      }
    }
    client.on('scrape', onScrape)
    // Without options the client scrapes its own hash (one string); with
    // several it sends a list, as Client.scrape does (Buffers, sent as binary).
    if (hashes.length === 1 && hashes[0] === INFO_HASH) client.scrape()
    else client.scrape({ infoHash: hashes.map(h => Buffer.from(h, 'hex')) })
  })
}

function httpScrape () {
  // The raw 20 bytes, escaped; the bencoded reply's counts read with a pattern.
  const escaped = INFO_HASH.match(/../g).map(h => '%' + h).join('')
  return new Promise((resolve, reject) => {
    http.get(httpBase + '/scrape?info_hash=' + escaped, reply => {
      const chunks = []
      reply.on('data', chunk => chunks.push(chunk))
      reply.on('end', () => {
        const text = Buffer.concat(chunks).toString('latin1')
        const number = key => Number((text.match(new RegExp(key + 'i(\\d+)e')) || [])[1])
        resolve({ complete: number('8:complete'), incomplete: number('10:incomplete') })
      })
    }).on('error', reject)
  })
}

async function main () {
  const out = {}
  const a = makeClient('2d5757303130352d616161616161616161616161')  // -WW0105-aaaaaaaaaaaa
  const b = makeClient('2d5757303130352d626262626262626262626262')  // -WW0105-bbbbbbbbbbbb

  const aStarted = next(a, 'update', 'the first announce reply')
  a.start()
  out.first = await aStarted

  const bStarted = next(b, 'update', 'the second announce reply')
  b.start()
  out.second = await bStarted
  // b's offers reach a (a answers them); a's answer is relayed back to b.
  await until(() => a.peers.some(p => !p.initiator) && b.peers.some(p => p.initiator),
    'an offer relayed to a and its answer relayed to b')
  out.a_peers = a.peers
  out.b_peers = b.peers

  out.scrape_one = await scrapeMany(a, [INFO_HASH])
  if (httpBase) out.http_scrape = await httpScrape()
  const completed = next(b, 'update', 'the reply to completed')
  b.complete()
  out.completed = await completed
  out.scrape_many = await scrapeMany(a, [INFO_HASH, OTHER_HASH])

  const stopped = next(b, 'update', 'the reply to stopped')
  b.stop()
  out.stopped = await stopped
  out.scrape_after_stop = await scrapeMany(a, [INFO_HASH])

  out.a_warnings = a.warnings
  out.b_warnings = b.warnings
  for (const reply of [out.first, out.second, out.completed, out.stopped]) {
    delete reply.announce
  }
  console.log(JSON.stringify(out))
  a.destroy()
  b.destroy()
  setTimeout(() => process.exit(0), 100)
}

main().catch(err => {
  console.log(JSON.stringify({ error: err.message }))
  process.exit(1)
})
