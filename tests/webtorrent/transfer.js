// A real WebRTC transfer between two WebTorrent (v1) clients that find each
// other only through the WebSocket tracker given: one seeds random bytes, the
// other downloads them. Prints one JSON line (ok, bytes, seconds, peers seen).
// libwebrtc ignores loopback addresses: run it where a non-loopback interface
// exists (tests/test_ws_webrtc.py runs it in a network namespace of its own).
//
//   node transfer.js ws://198.18.0.1:PORT [BYTES]
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const os = require('os')
const path = require('path')
const WebTorrent = require('webtorrent')
const wrtc = require('@roamhq/wrtc')

const url = process.argv[2]
const size = Number(process.argv[3] || 4 * 1024 * 1024)
const TIMEOUT_MS = 60000

function client () {
  // Only the tracker: no DHT, no local discovery, no web seeds, no TCP/uTP peers.
  return new WebTorrent({ dht: false, lsd: false, webSeeds: false, utp: false,
    tracker: { wrtc } })
}

function finish (result, code) {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
  console.log(JSON.stringify(result))
  setTimeout(() => process.exit(code), 200)
}

const data = crypto.randomBytes(size)
const seeder = client()
const leecher = client()
const started = Date.now()
const timer = setTimeout(() => finish({ ok: false, error: 'timed out' }, 1), TIMEOUT_MS)

seeder.on('error', err => finish({ ok: false, error: 'seeder: ' + err.message }, 1))
leecher.on('error', err => finish({ ok: false, error: 'leecher: ' + err.message }, 1))

// Each client its own directory: with the same one the leecher would find the
// seeder's file on disk and be done without a byte from the network.
const dirs = ['seeder', 'leecher'].map(name => fs.mkdtempSync(path.join(os.tmpdir(), 'wt-' + name + '-')))

seeder.seed(data, { name: 'clip.bin', announce: [url], path: dirs[0] }, seeded => {
  leecher.add(seeded.torrentFile, { announce: [url], path: dirs[1] }, torrent => {
    torrent.on('done', () => {
      torrent.files[0].getBuffer((err, got) => {
        clearTimeout(timer)
        if (err) return finish({ ok: false, error: err.message }, 1)
        finish({
          ok: Buffer.compare(got, data) === 0,
          bytes: got.length,
          seconds: (Date.now() - started) / 1000,
          peers: torrent.numPeers,
          received: torrent.received,
          wire_types: torrent.wires.map(wire => wire.type)
        }, 0)
      })
    })
  })
})
