/**
 * A raw client for tests: sends frames as given and records what arrives, so the protocol itself
 * is under test (the typed client is tested on top of it).
 */
import * as Effect from "effect/Effect"
import type { Transport } from "../src/index.ts"

export interface Raw {
  readonly ws: Transport.WebSocketLike
  readonly frames: Array<any>
  readonly closed: { code: number; reason: string } | undefined
  readonly send: (frame: unknown) => void
  /** Waits for the next frame (after those already taken) that matches. */
  readonly next: (match?: (frame: any) => boolean) => Effect.Effect<any>
  readonly awaitClose: Effect.Effect<{ readonly code: number; readonly reason: string }>
}

export const connect = (
  WebSocket: Transport.WebSocketConstructor,
  url: string,
  protocols: Array<string>
): Effect.Effect<Raw> =>
  Effect.promise(
    () =>
      new Promise<Raw>((resolve) => {
        const ws = new WebSocket(url, protocols)
        const frames: Array<any> = []
        let taken = 0
        let closed: { code: number; reason: string } | undefined
        const wake = new Set<() => void>()
        const notify = () => {
          for (const w of Array.from(wake)) w()
        }
        const raw: Raw = {
          ws,
          frames,
          get closed() {
            return closed
          },
          send: (frame) => ws.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
          next: (match = () => true) =>
            Effect.promise(
              () =>
                new Promise<any>((resolveFrame, reject) => {
                  const look = () => {
                    while (taken < frames.length) {
                      const frame = frames[taken++]
                      if (match(frame)) {
                        wake.delete(look)
                        return resolveFrame(frame)
                      }
                    }
                    if (closed !== undefined) {
                      wake.delete(look)
                      reject(new Error(`closed ${closed.code} ${closed.reason} while waiting for a frame`))
                    }
                  }
                  wake.add(look)
                  look()
                })
            ),
          awaitClose: Effect.promise(
            () =>
              new Promise((resolveClose) => {
                const look = () => {
                  if (closed !== undefined) {
                    wake.delete(look)
                    resolveClose(closed)
                  }
                }
                wake.add(look)
                look()
              })
          )
        }
        ws.addEventListener("message", (event) => {
          frames.push(JSON.parse(String(event.data)))
          notify()
        })
        ws.addEventListener("open", () => resolve(raw))
        ws.addEventListener("close", (event) => {
          closed = { code: event.code, reason: event.reason }
          notify()
          resolve(raw)
        })
      })
  )
