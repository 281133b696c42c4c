/**
 * A lean WebSocket client on raw TCP, so the load generator costs little next to the servers it
 * measures: frames are masked with a fixed key and built once, replies are parsed only as far as
 * their headers (or only counted, byte by byte, for fan-out), pings are answered with pongs.
 */
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { HOST } from "./shared.ts"

const MASK = Buffer.from([0x12, 0x34, 0x56, 0x78])
const shared = Buffer.alloc(256 * 1024)

/** A masked text frame, as a client must send it; build it once and send it many times. */
export const textFrame = (text: string): Buffer => {
  const data = Buffer.from(text)
  const head =
    data.length < 126
      ? Buffer.from([0x81, 0x80 | data.length])
      : Buffer.from([0x81, 0x80 | 126, data.length >> 8, data.length & 0xff])
  const body = Buffer.alloc(data.length)
  for (let i = 0; i < data.length; i++) body[i] = data[i]! ^ MASK[i & 3]!
  return Buffer.concat([head, MASK, body])
}

const pongFrame = (payload: Buffer): Buffer => {
  const body = Buffer.alloc(payload.length)
  for (let i = 0; i < payload.length; i++) body[i] = payload[i]! ^ MASK[i & 3]!
  return Buffer.concat([Buffer.from([0x8a, 0x80 | payload.length]), MASK, body])
}

export interface Connection {
  readonly socket: net.Socket
  /** Called with each text frame's payload (in parse mode). */
  onText: (payload: Buffer) => void
  /** Bytes received since the last `count()` (in count mode). */
  bytes: number
  readonly send: (frame: Buffer) => void
  /** From now on only count the bytes that arrive (no parsing). */
  readonly count: (onBytes: (n: number) => void) => void
  /** The next text frame. */
  readonly next: () => Promise<string>
  readonly close: () => void
}

/** Opens a WebSocket on raw TCP: resolves once the server answered 101. */
export const connect = (port: number, path: string, protocol: string): Promise<Connection> =>
  new Promise((resolve, reject) => {
    // Reads land in one buffer shared by every connection (the callback runs synchronously), so
    // counting a fan-out's bytes allocates nothing per read.
    const socket = net.connect({
      port,
      host: HOST,
      onread: {
        buffer: shared,
        callback: (nread: number) => {
          if (counting !== undefined) counting(nread)
          else onData(Buffer.from(shared.subarray(0, nread)))
          return true
        }
      }
    })
    socket.setNoDelay(true)
    let buffer: Buffer = Buffer.alloc(0)
    let upgraded = false
    let counting: ((n: number) => void) | undefined
    const waiters: Array<(text: string) => void> = []
    // Frames nobody waited for yet (the first may arrive with the 101, before `next` is called).
    const unread: Array<string> = []
    const connection: Connection = {
      socket,
      onText: (payload) => {
        const waiter = waiters.shift()
        if (waiter !== undefined) waiter(payload.toString())
        else unread.push(payload.toString())
      },
      bytes: 0,
      send: (frame) => void socket.write(frame),
      count: (onBytes) => {
        counting = onBytes
        if (buffer.length > 0) {
          onBytes(buffer.length)
          buffer = Buffer.alloc(0)
        }
      },
      next: () => {
        const text = unread.shift()
        return text !== undefined ? Promise.resolve(text) : new Promise((r) => waiters.push(r))
      },
      close: () => socket.destroy()
    }
    const parse = () => {
      while (buffer.length >= 2) {
        const opcode = buffer[0]! & 0x0f
        let length = buffer[1]! & 0x7f
        let offset = 2
        if (length === 126) {
          if (buffer.length < 4) return
          length = buffer.readUInt16BE(2)
          offset = 4
        } else if (length === 127) {
          if (buffer.length < 10) return
          length = Number(buffer.readBigUInt64BE(2))
          offset = 10
        }
        if (buffer.length < offset + length) return
        const payload = buffer.subarray(offset, offset + length)
        buffer = buffer.subarray(offset + length)
        if (opcode === 0x1) connection.onText(payload)
        else if (opcode === 0x9) socket.write(pongFrame(payload))
      }
    }
    const onData = (chunk: Buffer) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n")
        if (end === -1) return
        const head = buffer.subarray(0, end).toString()
        buffer = buffer.subarray(end + 4)
        if (!head.startsWith("HTTP/1.1 101")) {
          socket.destroy()
          return reject(new Error(head.split("\r\n")[0]))
        }
        upgraded = true
        resolve(connection)
      }
      parse()
    }
    socket.on("error", reject)
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n` +
        (protocol === "" ? "" : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
        "\r\n"
    )
  })
