/**
 * The benchmark's webhook receiver, in its own process so it has its own core: a node:http server on
 * 127.0.0.1 that answers every POST with 204 once the body is read, counts deliveries and, when asked,
 * records when each `webhook-id` arrived (for send-to-first-attempt latency). It talks to the runner
 * over IPC.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

export type Command = { readonly type: "count" } | { readonly type: "reset" } | { readonly type: "arrivals" }
export type Reply =
  | { readonly type: "ready"; readonly port: number }
  | { readonly type: "count"; readonly count: number }
  | { readonly type: "arrivals"; readonly arrivals: ReadonlyArray<readonly [id: string, at: number]> }

let count = 0
let arrivals: Array<readonly [string, number]> = []
const now = () => performance.timeOrigin + performance.now()

const server = createServer((request, response) => {
  request.on("data", () => {})
  request.on("end", () => {
    count++
    const id = request.headers["webhook-id"]
    // Only the first arrival of an id: the latency measured is to the first attempt.
    if (typeof id === "string") arrivals.push([id, now()])
    response.writeHead(204).end()
  })
})
server.keepAliveTimeout = 60_000

const send = (reply: Reply) => process.send?.(reply)

process.on("message", (command: Command) => {
  if (command.type === "count") send({ type: "count", count })
  else if (command.type === "reset") {
    count = 0
    arrivals = []
    send({ type: "count", count })
  } else {
    send({ type: "arrivals", arrivals })
    arrivals = []
  }
})
process.on("disconnect", () => process.exit(0))

server.listen(0, "127.0.0.1", () => send({ type: "ready", port: (server.address() as AddressInfo).port }))
