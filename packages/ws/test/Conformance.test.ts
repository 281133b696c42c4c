/**
 * An RFC 6455 conformance subset, through our server over raw TCP with hand-built frames (no
 * WebSocket library on the client side): control frames, protocol errors, invalid UTF-8, size
 * limits and fragmentation. `ws` does the framing on the server; these tests prove it through the
 * channel route, and that the server keeps serving after each violation.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { App } from "@strata/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServer from "effect/http/HttpServer"
import { createServer } from "node:http"
import * as net from "node:net"
import { randomBytes } from "node:crypto"
import { Hub } from "../src/index.ts"
import { chat, makeApp, UsersLive } from "./fixtures.ts"

const MAX = 1024

const serverLayer = App.serve(makeApp({ maxMessageSize: MAX })).pipe(
  Hub.drainFirst,
  Layer.provide(UsersLive),
  Layer.provideMerge(Hub.layer({ tick: "100 millis" })),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const Op = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** A client frame: masked unless told otherwise, as RFC 6455 §5.3 requires of clients. */
const frame = (
  opcode: number,
  payload: Uint8Array | string,
  options: { fin?: boolean; rsv?: number; masked?: boolean } = {}
): Buffer => {
  const data = typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload)
  const fin = options.fin ?? true
  const masked = options.masked ?? true
  const head: Array<number> = [(fin ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode]
  const maskBit = masked ? 0x80 : 0
  if (data.length < 126) head.push(maskBit | data.length)
  else if (data.length < 65536) head.push(maskBit | 126, data.length >> 8, data.length & 0xff)
  else {
    head.push(maskBit | 127, 0, 0, 0, 0)
    head.push(
      (data.length >>> 24) & 0xff,
      (data.length >>> 16) & 0xff,
      (data.length >>> 8) & 0xff,
      data.length & 0xff
    )
  }
  if (!masked) return Buffer.concat([Buffer.from(head), data])
  const mask = randomBytes(4)
  const body = Buffer.alloc(data.length)
  for (let i = 0; i < data.length; i++) body[i] = data[i]! ^ mask[i % 4]!
  return Buffer.concat([Buffer.from(head), mask, body])
}

const closePayload = (code: number, reason: Uint8Array | string = "") =>
  Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)])

interface ServerFrame {
  readonly fin: boolean
  readonly opcode: number
  readonly payload: Buffer
}

/** A raw TCP connection that did the opening handshake. */
interface Peer {
  readonly write: (data: Buffer) => void
  /** The next frame from the server. */
  readonly next: () => Promise<ServerFrame>
  /** Resolves when the server ends the TCP connection. */
  readonly ended: Promise<void>
  readonly destroy: () => void
}

const open = (port: number): Promise<Peer> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    let buffer = Buffer.alloc(0)
    let upgraded = false
    const frames: Array<ServerFrame> = []
    const waiting: Array<(f: ServerFrame) => void> = []
    let endResolve: () => void = () => {}
    const ended = new Promise<void>((r) => (endResolve = r))
    const parse = () => {
      while (buffer.length >= 2) {
        const b0 = buffer[0]!
        const b1 = buffer[1]!
        let length = b1 & 0x7f
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
        const parsed = {
          fin: (b0 & 0x80) !== 0,
          opcode: b0 & 0x0f,
          payload: buffer.subarray(offset, offset + length)
        }
        buffer = buffer.subarray(offset + length)
        const waiter = waiting.shift()
        if (waiter) waiter(parsed)
        else frames.push(parsed)
      }
    }
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n")
        if (end === -1) return
        const head = buffer.subarray(0, end).toString()
        buffer = buffer.subarray(end + 4)
        if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(head))
        upgraded = true
        resolve({
          write: (data) => socket.write(data),
          next: () =>
            new Promise((r, fail) => {
              const ready = frames.shift()
              if (ready) return r(ready)
              waiting.push(r)
              setTimeout(() => fail(new Error("no frame within 2 s")), 2000)
            }),
          ended,
          destroy: () => socket.destroy()
        })
      }
      parse()
    })
    socket.on("error", () => {})
    socket.on("close", () => endResolve())
    socket.write(
      [
        "GET /ws/chat?token=1 HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
        "Sec-WebSocket-Version: 13",
        `Sec-WebSocket-Protocol: ${chat.protocol}`,
        "",
        ""
      ].join("\r\n")
    )
  })

const textOf = (f: ServerFrame) => f.payload.toString()
const codeOf = (f: ServerFrame) => (f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005)

/** Skips the welcome notice and returns the next frame that is a close frame. */
const closeFrame = async (peer: Peer): Promise<number> => {
  for (;;) {
    const next = await peer.next()
    if (next.opcode === Op.close) return codeOf(next)
  }
}

const port = Effect.map(HttpServer.HttpServer, (server) => (server.address as { readonly port: number }).port)

const withPeer = <A>(f: (peer: Peer) => Promise<A>) =>
  Effect.flatMap(port, (p) =>
    Effect.promise(() => open(p).then((peer) => f(peer).finally(() => peer.destroy())))
  )

/** After each violation the server still answers a well-behaved client. */
const stillServes = withPeer(async (peer) => {
  expect(JSON.parse(textOf(await peer.next()))).toMatchObject({ t: "m", d: { _tag: "Notice" } })
  peer.write(frame(Op.text, JSON.stringify({ t: "m", d: { _tag: "Echo", text: "ok" } })))
  expect(JSON.parse(textOf(await peer.next()))).toEqual({ t: "m", d: { _tag: "Echoed", text: "ok" } })
})

const violation = (build: () => Array<Buffer>, expected: number) =>
  Effect.gen(function* () {
    const code = yield* withPeer(async (peer) => {
      for (const data of build()) peer.write(data)
      const received = await closeFrame(peer)
      await peer.ended
      return received
    })
    expect(code).toBe(expected)
    yield* stillServes
  })

describe("RFC 6455 over raw TCP", () => {
  it.live("answers a ping with a pong carrying the same payload", () =>
    withPeer(async (peer) => {
      await peer.next()
      peer.write(frame(Op.ping, "are you there?"))
      const pong = await peer.next()
      expect(pong.opcode).toBe(Op.pong)
      expect(textOf(pong)).toBe("are you there?")
    }).pipe(Effect.provide(serverLayer))
  )

  it.live("echoes a close frame with the client's code and ends the connection", () =>
    withPeer(async (peer) => {
      await peer.next()
      peer.write(frame(Op.close, closePayload(1000, "bye")))
      const echoed = await peer.next()
      expect(echoed.opcode).toBe(Op.close)
      expect(codeOf(echoed)).toBe(1000)
      await peer.ended
    }).pipe(Effect.provide(serverLayer))
  )

  it.live("assembles a fragmented text message", () =>
    withPeer(async (peer) => {
      await peer.next()
      const text = JSON.stringify({ t: "m", d: { _tag: "Echo", text: "in three parts" } })
      peer.write(frame(Op.text, text.slice(0, 10), { fin: false }))
      peer.write(frame(Op.ping, "between"))
      peer.write(frame(Op.continuation, text.slice(10, 20), { fin: false }))
      peer.write(frame(Op.continuation, text.slice(20)))
      const pong = await peer.next()
      expect(pong.opcode).toBe(Op.pong)
      expect(JSON.parse(textOf(await peer.next()))).toEqual({
        t: "m",
        d: { _tag: "Echoed", text: "in three parts" }
      })
    }).pipe(Effect.provide(serverLayer))
  )

  it.live("closes with 1007 on invalid UTF-8 in a text frame and in a close reason", () =>
    Effect.gen(function* () {
      yield* violation(() => [frame(Op.text, new Uint8Array([0x7b, 0xc3, 0x28, 0x7d]))], 1007)
      yield* violation(() => [frame(Op.close, closePayload(1000, new Uint8Array([0xff, 0xfe])))], 1007)
      // A code point split across fragments is fine; a truncated one at the end is not.
      yield* violation(
        () => [
          frame(Op.text, new Uint8Array([0xe2, 0x82]), { fin: false }),
          frame(Op.continuation, new Uint8Array([]))
        ],
        1007
      )
    }).pipe(Effect.provide(serverLayer))
  )

  it.live("closes with 1002 on protocol errors", () =>
    Effect.gen(function* () {
      // Reserved bits without a negotiated extension.
      yield* violation(() => [frame(Op.text, "{}", { rsv: 0b100 })], 1002)
      yield* violation(() => [frame(Op.text, "{}", { rsv: 0b001 })], 1002)
      // Reserved opcodes.
      yield* violation(() => [frame(0x3, "")], 1002)
      yield* violation(() => [frame(0xb, "")], 1002)
      // A fragmented control frame, and a control frame over 125 bytes.
      yield* violation(() => [frame(Op.ping, "part", { fin: false })], 1002)
      yield* violation(() => [frame(Op.ping, "x".repeat(126))], 1002)
      // A continuation with nothing to continue, and a new message inside a fragmented one.
      yield* violation(() => [frame(Op.continuation, "orphan")], 1002)
      yield* violation(() => [frame(Op.text, "{", { fin: false }), frame(Op.text, "}")], 1002)
      // An unmasked client frame.
      yield* violation(() => [frame(Op.text, "{}", { masked: false })], 1002)
      // Close codes that may not be sent.
      yield* violation(() => [frame(Op.close, closePayload(1005))], 1002)
      yield* violation(() => [frame(Op.close, closePayload(999))], 1002)
    }).pipe(Effect.provide(serverLayer))
  )

  it.live("closes with 1009 past the message size limit, also when fragments add up past it", () =>
    Effect.gen(function* () {
      yield* violation(() => [frame(Op.text, "x".repeat(MAX + 1))], 1009)
      yield* violation(
        () => [
          frame(Op.text, "x".repeat(MAX / 2), { fin: false }),
          frame(Op.continuation, "x".repeat(MAX / 2), { fin: false }),
          frame(Op.continuation, "x")
        ],
        1009
      )
    }).pipe(Effect.provide(serverLayer))
  )

  it.live("closes with 1003 on a binary message: channels speak text", () =>
    violation(() => [frame(Op.binary, new Uint8Array([1, 2, 3]))], 1003).pipe(Effect.provide(serverLayer))
  )
})
