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

// The subprotocol of the handshake in progress.
let agreed: string | undefined

const serverFor = (maxMessageSize: number): WebSocketServer => {
  let server = servers.get(maxMessageSize)
  if (server === undefined) {
    server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: maxMessageSize,
      // Compression costs memory per connection and CPU per frame; channels send small JSON.
      perMessageDeflate: false,
      // The route checked the offer before upgrading; agree on the channel's protocol (set for
      // the synchronous `handleUpgrade` call, so the request object gets no property of ours).
      handleProtocols: (offered) => (agreed !== undefined && offered.has(agreed) ? agreed : false)
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
  Effect.suspend(() => {
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
      return Effect.fail(
        new Transport.UpgradeError({
          reason: "the request did not come through Node's upgrade event; serve the app with NodeHttpServer"
        })
      )
    }
    if (socket.destroyed) return closedDuringHandshake()
    // Without `verifyClient`, ws completes or refuses the handshake before `handleUpgrade`
    // returns: the callback has run, or ws answered the refusal (bad key or version) and closes the
    // socket. So no close listener is needed to learn the outcome, and none is left on the socket.
    let accepted: WebSocket | undefined
    agreed = options.protocol
    try {
      // Clients wait for the 101 before sending frames (RFC 6455 §4.1), so nothing is buffered
      // beyond the request: the head is empty.
      serverFor(options.maxMessageSize).handleUpgrade(incoming, socket, empty, (ws) => {
        accepted = ws
      })
    } finally {
      agreed = undefined
    }
    return accepted === undefined ? closedDuringHandshake() : Effect.succeed(new NodeSocket(accepted, socket))
  })

const closedDuringHandshake = () =>
  Effect.fail(
    new Transport.UpgradeError({
      reason: "ws refused the handshake (bad key or version) or the socket closed during it"
    })
  )

// The listener rides on the ws and net sockets themselves, and the event handlers are shared
// functions (`this` is the emitter): an idle connection costs no closures of its own.
const kListener = Symbol.for("@strata/ws/NodeTransport/listener")

interface Listened {
  [kListener]?: Transport.Listener
}

function onMessage(this: WebSocket & Listened, data: WebSocket.RawData, isBinary: boolean): void {
  const listener = this[kListener]!
  if (isBinary) return listener.onBinary()
  listener.onMessage(
    Buffer.isBuffer(data)
      ? data.toString()
      : Array.isArray(data)
        ? Buffer.concat(data).toString()
        : Buffer.from(data).toString()
  )
}

function onPong(this: WebSocket & Listened): void {
  this[kListener]!.onPong()
}

function onDrain(this: Duplex & Listened): void {
  this[kListener]?.onDrain()
}

function onClose(this: WebSocket & Listened, code: number, reason: Buffer): void {
  this[kListener]!.onClose(code, reason.toString())
}

// ws reports protocol errors (then closes with their code); the close event follows.
const ignore = (): void => {}

const sendOptions = { binary: false, compress: false, fin: true } as const

class NodeSocket implements Transport.Socket {
  readonly ws: WebSocket
  readonly socket: Duplex
  constructor(ws: WebSocket, socket: Duplex) {
    this.ws = ws
    this.socket = socket
  }
  get protocol(): string {
    return this.ws.protocol
  }
  get bufferedAmount(): number {
    return this.ws.bufferedAmount
  }
  send(data: string | Uint8Array): void {
    if (this.ws.readyState === 1) this.ws.send(data, sendOptions)
  }
  close(code: number, reason: string): void {
    this.ws.close(code, reason)
  }
  terminate(): void {
    this.ws.terminate()
  }
  ping(): boolean {
    if (this.ws.readyState === 1) this.ws.ping()
    return true
  }
  cork(): void {
    this.socket.cork()
  }
  uncork(): void {
    this.socket.uncork()
  }
  pause(): void {
    this.ws.pause()
  }
  resume(): void {
    this.ws.resume()
  }
  listen(listener: Transport.Listener): void {
    ;(this.ws as WebSocket & Listened)[kListener] = listener
    ;(this.socket as Duplex & Listened)[kListener] = listener
    this.ws.on("message", onMessage)
    this.ws.on("pong", onPong)
    this.ws.on("error", ignore)
    this.ws.on("close", onClose)
    this.socket.on("drain", onDrain)
  }
}
