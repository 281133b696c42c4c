/**
 * The Node transport: completes the WebSocket handshake with `ws` on the socket of a request that
 * Effect's Node HTTP server handed to the route (after the route's middleware ran), so the channel
 * has protocol pings, `bufferedAmount`, corked writes and a per-route message size limit.
 *
 * @since 0.1.0
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Effect from "effect/Effect"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import type { IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocketServer, type WebSocket } from "ws"
import * as Transport from "./Transport.ts"

// One `ws` server per message size limit; `noServer`, so it never listens itself.
const servers = new Map<number, WebSocketServer>()

const serverFor = (maxMessageSize: number): WebSocketServer => {
  let server = servers.get(maxMessageSize)
  if (server === undefined) {
    server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: maxMessageSize,
      // Compression costs memory per connection and CPU per frame; channels send small JSON.
      perMessageDeflate: false,
      // The route checked the offer before upgrading; agree on the channel's protocol.
      handleProtocols: (offered, request) => {
        const wanted = (request as IncomingMessage & { strataProtocol?: string }).strataProtocol
        return wanted !== undefined && offered.has(wanted) ? wanted : false
      }
    })
    servers.set(maxMessageSize, server)
  }
  return server
}

const empty = Buffer.alloc(0)

/**
 * Upgrades a request served by Effect's Node HTTP server (`NodeHttpServer`), whose route runs on
 * Node's `upgrade` event.
 *
 * @category constructors
 */
export const upgrade = (
  request: HttpServerRequest.HttpServerRequest,
  options: Transport.UpgradeOptions
): Effect.Effect<Transport.Socket, Transport.UpgradeError> =>
  Effect.callback<Transport.Socket, Transport.UpgradeError>((resume) => {
    let incoming: IncomingMessage | undefined
    try {
      incoming = NodeHttpServerRequest.toIncomingMessage(request) as IncomingMessage
    } catch {
      incoming = undefined
    }
    const socket = incoming?.socket as Duplex | undefined
    if (
      incoming === undefined ||
      socket === undefined ||
      socket === null ||
      (incoming as { readonly upgrade?: boolean }).upgrade !== true
    ) {
      resume(
        Effect.fail(
          new Transport.UpgradeError({
            reason: "the request did not come through Node's upgrade event; serve the app with NodeHttpServer"
          })
        )
      )
      return
    }
    ;(incoming as IncomingMessage & { strataProtocol?: string }).strataProtocol = options.protocol
    // A handshake ws refuses (bad key or version) is answered by ws and the socket closed.
    const onClose = () =>
      resume(Effect.fail(new Transport.UpgradeError({ reason: "the socket closed during the handshake" })))
    if (socket.destroyed) return onClose()
    socket.once("close", onClose)
    // Clients wait for the 101 before sending frames (RFC 6455 §4.1), so nothing is buffered
    // beyond the request: the head is empty.
    serverFor(options.maxMessageSize).handleUpgrade(incoming, socket, empty, (ws) => {
      socket.off("close", onClose)
      resume(Effect.succeed(wrap(ws, socket)))
    })
  })

const wrap = (ws: WebSocket, socket: Duplex): Transport.Socket => {
  const sendOptions = { binary: false, compress: false, fin: true } as const
  return {
    protocol: ws.protocol,
    get bufferedAmount() {
      return ws.bufferedAmount
    },
    send: (data) => {
      if (ws.readyState === 1) ws.send(data, sendOptions)
    },
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
    ping: () => {
      if (ws.readyState === 1) ws.ping()
      return true
    },
    cork: () => socket.cork(),
    uncork: () => socket.uncork(),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    listen: (listener) => {
      ws.on("message", (data, isBinary) => {
        if (isBinary) return listener.binary()
        listener.message(
          Array.isArray(data)
            ? Buffer.concat(data).toString()
            : Buffer.isBuffer(data)
              ? data.toString()
              : Buffer.from(data).toString()
        )
      })
      ws.on("pong", () => listener.pong())
      socket.on("drain", () => listener.drain())
      // ws reports protocol errors (then closes with their code); the close event follows.
      ws.on("error", () => {})
      ws.on("close", (code, reason) => listener.close(code, reason.toString()))
    }
  }
}
