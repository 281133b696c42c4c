/**
 * The Node adapter over real sockets on 127.0.0.1: Effect's Node HTTP server hands the upgrade to
 * the route, the middleware answer refusals with their own status, `ws` completes the handshake,
 * and the typed client runs on Node's global WebSocket.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as HttpServer from "effect/http/HttpServer"
import { App } from "@strata/core"
import { createServer, request as httpRequest } from "node:http"
import WebSocket from "ws"
import { Channel, Client, Hub, Transport } from "../src/index.ts"
import { chat, makeApp, roomId, UsersLive } from "./fixtures.ts"

const serverLayer = (options?: Channel.RouteOptions) =>
  App.serve(makeApp(options)).pipe(
    Hub.drainFirst,
    Layer.provide(UsersLive),
    Layer.provideMerge(Hub.layer({ tick: "50 millis" })),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
  )

const address = Effect.map(HttpServer.HttpServer, (server) => {
  const url = HttpServer.formatAddress(server.address)
  return { http: url, ws: url.replace(/^http/, "ws") }
})

/** The raw HTTP answer to an upgrade request: status and body, as curl would show them. */
const upgradeRequest = (url: string, protocol: string) =>
  Effect.promise(
    () =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        // A fresh connection each time: Effect's Node server answers a refused upgrade with
        // `Connection: keep-alive` and then ends the socket, so a pooled one would hang up.
        const req = httpRequest(url, {
          agent: false,
          headers: {
            connection: "Upgrade",
            upgrade: "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-protocol": protocol
          }
        })
        req.on("response", (res) => {
          let body = ""
          res.on("data", (chunk) => (body += chunk))
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
        })
        req.on("upgrade", (res, socket) => {
          socket.destroy()
          resolve({ status: res.statusCode ?? 0, body: "" })
        })
        req.on("error", reject)
        req.end()
      })
  )

/** A `ws` client; resolves when it opens or fails, with what happened. */
const wsClient = (url: string, protocol: string, options: WebSocket.ClientOptions = {}) =>
  Effect.promise(
    () =>
      new Promise<{ ws: WebSocket; frames: Array<any>; closed: Promise<{ code: number; reason: string }> }>(
        (resolve, reject) => {
          const ws = new WebSocket(url, [protocol], options)
          const frames: Array<any> = []
          const closed = new Promise<{ code: number; reason: string }>((r) =>
            ws.on("close", (code, reason) => r({ code, reason: reason.toString() }))
          )
          ws.on("message", (data) => frames.push(JSON.parse(data.toString())))
          ws.on("open", () => resolve({ ws, frames, closed }))
          ws.on("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
          ws.on("error", reject)
        }
      )
  )

/** One element at a time from a stream. */
const puller = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.map(Stream.toPull(stream), (pull) => {
    const buffer: Array<A> = []
    return Effect.suspend(() =>
      buffer.length > 0
        ? Effect.succeed(buffer.shift()!)
        : Effect.map(pull, (chunk) => {
            buffer.push(...chunk)
            return buffer.shift()!
          })
    )
  })

describe("Node adapter", () => {
  it.live("answers refused upgrades with the middleware's status and a body, over a real socket", () =>
    Effect.gen(function* () {
      const { http } = yield* address
      expect((yield* upgradeRequest(`${http}/ws/chat`, chat.protocol)).status).toBe(401)
      expect((yield* upgradeRequest(`${http}/ws/chat?token=3`, chat.protocol)).status).toBe(403)
      const mismatch = yield* upgradeRequest(`${http}/ws/chat?token=1`, "strata.ffffffffffffffff")
      expect(mismatch.status).toBe(400)
      expect(JSON.parse(mismatch.body).message).toContain("protocol version differs")
      expect((yield* upgradeRequest(`${http}/ws/chat?token=1`, chat.protocol)).status).toBe(101)
      const plain = yield* Effect.promise(() => fetch(`${http}/ws/chat?token=1`))
      expect(plain.status).toBe(426)
    }).pipe(Effect.provide(serverLayer()))
  )

  it.live("runs the typed client on Node's global WebSocket: messages, requests, topics", () =>
    Effect.gen(function* () {
      const { ws } = yield* address
      const r1 = roomId("r1")
      const ada = yield* Client.make(chat, { url: `${ws}/ws/chat?token=1` })
      const bob = yield* Client.make(chat, { url: `${ws}/ws/chat?token=2` })
      const adaRoom = yield* puller(ada.subscribe("room", r1))
      const bobRoom = yield* puller(bob.subscribe("room", r1))
      expect(yield* adaRoom).toMatchObject({ _tag: "Joined", offset: 0 })
      expect(yield* bobRoom).toMatchObject({ _tag: "Joined", offset: 0 })
      expect(yield* ada.request("history", { room: r1 })).toEqual(["hello", "world"])
      yield* ada.send({ _tag: "Say", room: r1, text: "over TCP" })
      const event = { _tag: "Message", offset: 1, payload: { from: "Ada", text: "over TCP" } }
      expect(yield* bobRoom).toMatchObject(event)
      expect(yield* adaRoom).toMatchObject(event)
      const members = yield* ada.presence("room", r1)
      expect(members.map((m) => m.meta.name).toSorted()).toEqual(["Ada", "Bob"])
    }).pipe(Effect.provide(serverLayer()))
  )

  it.live("closes with 1009 past the size limit and 1003 on binary frames", () =>
    Effect.gen(function* () {
      const { ws } = yield* address
      const big = yield* wsClient(`${ws}/ws/chat?token=1`, chat.protocol)
      big.ws.send(JSON.stringify({ t: "m", d: { _tag: "Echo", text: "x".repeat(2000) } }))
      expect((yield* Effect.promise(() => big.closed)).code).toBe(1009)
      const binary = yield* wsClient(`${ws}/ws/chat?token=1`, chat.protocol)
      binary.ws.send(Buffer.from([1, 2, 3]))
      expect((yield* Effect.promise(() => binary.closed)).code).toBe(1003)
    }).pipe(Effect.provide(serverLayer({ maxMessageSize: 1024 })))
  )

  it.live("pings with protocol pings; a peer that stops answering is closed with 4003", () =>
    Effect.gen(function* () {
      const { ws } = yield* address
      const alive = yield* wsClient(`${ws}/ws/chat?token=1`, chat.protocol)
      const pings: Array<number> = []
      alive.ws.on("ping", () => pings.push(Date.now()))
      const deaf = yield* wsClient(`${ws}/ws/chat?token=2`, chat.protocol, { autoPong: false })
      const closed = yield* Effect.promise(() => deaf.closed)
      expect(closed).toEqual({ code: 4003, reason: "HeartbeatTimeout" })
      expect(pings.length).toBeGreaterThan(0)
      expect(alive.ws.readyState).toBe(WebSocket.OPEN)
    }).pipe(Effect.provide(serverLayer({ heartbeat: { interval: "100 millis", timeout: "150 millis" } })))
  )

  it.live("shuts down with 1001 and refuses new upgrades with 503", () =>
    Effect.gen(function* () {
      const { ws, http } = yield* address
      const a = yield* wsClient(`${ws}/ws/chat?token=1`, chat.protocol)
      const b = yield* wsClient(`${ws}/ws/chat?token=2`, chat.protocol)
      yield* Hub.shutdown({ batchSize: 1, batchInterval: "20 millis", deadline: "2 seconds" })
      expect(yield* Effect.promise(() => a.closed)).toEqual({ code: 1001, reason: "GoingAway" })
      expect((yield* Effect.promise(() => b.closed)).code).toBe(1001)
      expect((yield* upgradeRequest(`${http}/ws/chat?token=1`, chat.protocol)).status).toBe(503)
      expect((yield* Hub.Hub.pipe(Effect.flatMap((hub) => hub.metrics))).connections).toBe(0)
    }).pipe(Effect.provide(serverLayer()))
  )

  describe("on Effect's own upgrade (Transport.effectSocket)", () => {
    const effectLayer = serverLayer({
      heartbeat: { interval: "100 millis", timeout: "150 millis" },
      maxMessageSize: 1024
    }).pipe(Layer.provide(Layer.succeed(Transport.Upgrader, Transport.effectSocket)))

    it.live("serves the typed client, with heartbeats as frames the client answers", () =>
      Effect.gen(function* () {
        const { ws } = yield* address
        const r1 = roomId("r1")
        const ada = yield* Client.make(chat, { url: `${ws}/ws/chat?token=1` })
        const room = yield* puller(ada.subscribe("room", r1))
        const messages = yield* puller(ada.messages)
        expect(yield* messages).toEqual({ _tag: "Notice", text: "welcome Ada" })
        expect(yield* room).toMatchObject({ _tag: "Joined" })
        expect(yield* ada.request("history", { room: r1 })).toEqual(["hello", "world"])
        yield* ada.send({ _tag: "Say", room: r1, text: "via Effect's socket" })
        expect(yield* room).toMatchObject({ _tag: "Message", payload: { text: "via Effect's socket" } })
        // Several heartbeat intervals pass; the client answers each `h` and stays connected.
        yield* Effect.sleep("600 millis")
        expect(yield* ada.currentStatus).toEqual({ _tag: "Open" })
        yield* ada.send({ _tag: "Echo", text: "still" })
        expect(yield* messages).toEqual({ _tag: "Echoed", text: "still" })
      }).pipe(Effect.provide(effectLayer))
    )

    it.live("closes a peer that does not answer heartbeats with 4003, and oversize messages with 1009", () =>
      Effect.gen(function* () {
        const { ws } = yield* address
        const deaf = yield* wsClient(`${ws}/ws/chat?token=2`, chat.protocol)
        expect((yield* Effect.promise(() => deaf.closed)).code).toBe(4003)
        expect(deaf.frames).toContainEqual({ t: "h" })
        const big = yield* wsClient(`${ws}/ws/chat?token=1`, chat.protocol)
        big.ws.send(JSON.stringify({ t: "m", d: { _tag: "Echo", text: "x".repeat(2000) } }))
        expect((yield* Effect.promise(() => big.closed)).code).toBe(1009)
      }).pipe(Effect.provide(effectLayer))
    )
  })
})
