/**
 * What the WebSocket benchmark's servers and its runner share: the address, the messages of each
 * workload in the one wire format every server speaks here, and the control messages a server
 * process answers over its IPC channel (its port when ready, its memory after a GC, its CPU time).
 */
export const HOST = "127.0.0.1"

/** 64 bytes of text, the payload of every echo and fan-out message. */
export const TEXT = "x".repeat(64)

/**
 * The frames of the Strata protocol, which the raw `ws` server speaks too (it parses and builds
 * the same JSON a Strata channel does, minus the Schema and the runtime). Socket.IO speaks its own.
 */
export const frames = {
  echo: JSON.stringify({ t: "m", d: { _tag: "Echo", text: TEXT } }),
  publish: JSON.stringify({ t: "m", d: { _tag: "Publish", text: TEXT } }),
  join: JSON.stringify({ t: "j", n: "feed", k: "all" })
} as const

export const socketIoFrames = {
  echo: `42["echo","${TEXT}"]`,
  publish: `42["publish","${TEXT}"]`,
  join: '420["join"]'
} as const

export type ServerName = "strata" | "ws" | "socketio"

/** From a server process. */
export type ServerMessage =
  | { readonly type: "ready"; readonly port: number; readonly protocol: string }
  | { readonly type: "memory"; readonly rss: number; readonly heapUsed: number; readonly external: number }
  | { readonly type: "cpu"; readonly micros: number }

/** To a server process. */
export type ControlMessage = { readonly type: "memory" } | { readonly type: "cpu" }

/** Answers the runner's control messages; every server process calls it once it listens. */
export const serveControl = (port: number, protocol: string): void => {
  process.on("message", (message: ControlMessage) => {
    if (message.type === "memory") {
      // Twice: the first collection can leave garbage that finalizers released.
      globalThis.gc?.()
      globalThis.gc?.()
      const usage = process.memoryUsage()
      process.send!({ type: "memory", rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external })
    } else if (message.type === "cpu") {
      const usage = process.cpuUsage()
      process.send!({ type: "cpu", micros: usage.user + usage.system })
    }
  })
  process.send!({ type: "ready", port, protocol } satisfies ServerMessage)
}
