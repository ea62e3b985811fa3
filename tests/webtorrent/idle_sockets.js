// Opens COUNT WebSocket connections to a tracker, each announcing once (a
// browser in one of 100 swarms, no offers), then holds them until killed.
// Prints "ready N" when all have their announce answered.
//
//   node idle_sockets.js ws://127.0.0.1:PORT COUNT
'use strict'

const WebSocket = require('ws')

const url = process.argv[2]
const count = Number(process.argv[3] || 1000)
let answered = 0
const sockets = []

function open (n) {
  const socket = new WebSocket(url, { perMessageDeflate: false })
  socket.on('error', err => { console.log('error ' + err.message); process.exit(1) })
  socket.on('open', () => {
    socket.send(JSON.stringify({ action: 'announce', info_hash: ('s' + (n % 100)).padEnd(20, '.'),
      peer_id: ('-ID0001-' + String(n).padStart(12, '0')), left: 1, event: 'started',
      numwant: 0, offers: [] }))
  })
  socket.once('message', () => {
    answered++
    if (answered === count) console.log('ready ' + answered)
    else if (next < count) open(next++)   // the next one once this one is in
  })
  sockets.push(socket)
}

// 50 connections on their way at a time: the listen backlog is never overrun.
let next = 0
while (next < Math.min(50, count)) open(next++)
