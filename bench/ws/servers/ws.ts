/**
 * The raw `ws` server: the same JSON frames as the Strata channel, parsed and built by hand with no
 * validation, the way an app on bare `ws` would; subscribers of the feed are a Set, and a publish
 * is stringified once and sent to each.
 */
import { createRequire } from "node:module"
import { HOST, serveControl } from "../shared.ts"

// The bench has `ws` but not its types; what is used of it, typed here.
interface WebSocket {
  send(data: string): void
  on(event: "error" | "close", listener: () => void): void
  on(event: "message", listener: (data: Buffer) => void): void
}
interface WebSocketServer {
  on(event: "connection", listener: (socket: WebSocket) => void): void
  on(event: "listening", listener: () => void): void
  address(): { readonly port: number }
}
const { WebSocketServer } = createRequire(import.meta.url)("ws") as {
  readonly WebSocketServer: new (options: Record<string, unknown>) => WebSocketServer
}

const subscribers = new Set<WebSocket>()
const server = new WebSocketServer({ host: HOST, port: 0, perMessageDeflate: false, clientTracking: false })

server.on("connection", (socket) => {
  socket.on("error", () => {})
  socket.on("close", () => subscribers.delete(socket))
  socket.on("message", (data) => {
    let frame: any
    try {
      frame = JSON.parse(data.toString())
    } catch {
      return
    }
    if (frame.t === "m" && frame.d?._tag === "Echo") {
      socket.send(JSON.stringify({ t: "m", d: { _tag: "Echoed", text: frame.d.text } }))
    } else if (frame.t === "m" && frame.d?._tag === "Publish") {
      const event = JSON.stringify({ t: "e", n: "feed", k: "all", d: { text: frame.d.text } })
      for (const subscriber of subscribers) subscriber.send(event)
    } else if (frame.t === "j") {
      subscribers.add(socket)
      socket.send(JSON.stringify({ t: "j", n: frame.n, k: frame.k, ok: {} }))
    }
  })
})

server.on("listening", () => serveControl(server.address().port, ""))
