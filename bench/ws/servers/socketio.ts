/**
 * The Socket.IO server: WebSocket transport only, no compression, the events `echo` (answered with
 * `echoed`), `join` (the `feed` room, acknowledged) and `publish` (emitted to the room, which
 * Socket.IO encodes once for all its members).
 */
import { createServer } from "node:http"
import { Server } from "socket.io"
import { HOST, serveControl } from "../shared.ts"

const http = createServer()
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false, serveClient: false })

io.on("connection", (socket) => {
  socket.on("echo", (text: string) => socket.emit("echoed", text))
  socket.on("join", (ack: () => void) => {
    socket.join("feed")
    ack()
  })
  socket.on("publish", (text: string) => io.to("feed").emit("event", { text }))
})

http.listen(0, HOST, () => serveControl((http.address() as { readonly port: number }).port, ""))
