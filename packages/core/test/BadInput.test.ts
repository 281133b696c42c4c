/**
 * Hostile requests over a real socket: each gets a clear status and the server keeps serving.
 * (Bodies, cookies and static paths have their own tests in Body, Operations and Static.)
 */
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { createServer, request as httpRequest } from "node:http"
import { App, Logger, RequestId, Route, Router } from "../src/index.ts"

const app = Router.make([
  Route.get("/health", HttpServerResponse.text("ok")),
  Route.get(
    "/users/:id",
    Effect.map(HttpRouter.params, (p) => HttpServerResponse.text(`user ${p["id"]}`))
  )
]).pipe(Router.use(RequestId.middleware(), Logger.middleware()))

const server = App.serve(app).pipe(
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

/** A raw request, so the path reaches the server exactly as written. */
const raw = (port: number, path: string, headers: Record<string, string> = {}) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers, timeout: 5_000 }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on("timeout", () => req.destroy(new Error("timed out")))
    req.on("error", reject)
    req.end()
  })

describe("bad input over a real socket", () => {
  it.live("answers each hostile request clearly and keeps serving", () =>
    Effect.gen(function* () {
      const address = (yield* HttpServer.HttpServer).address
      const port = "port" in address ? address.port : 0
      const results = yield* Effect.promise(async () => ({
        badPercent: await raw(port, "/users/%E0%A4%A"),
        lonePercent: await raw(port, "/%"),
        encodedSlash: await raw(port, "/users/a%2Fb"),
        hugeHeader: await raw(port, "/health", { "x-big": "x".repeat(20_000) }),
        manyCookies: await raw(port, "/health", {
          cookie: Array.from({ length: 300 }, (_, i) => `c${i}=${"v".repeat(20)}`).join("; ")
        }),
        after: await raw(port, "/health")
      }))
      expect(results.badPercent.status).toBe(400)
      expect(JSON.parse(results.badPercent.body)).toEqual({
        error: "BadRequest",
        message: "The path is not valid percent-encoding"
      })
      expect(results.lonePercent.status).toBe(400)
      expect(results.encodedSlash).toEqual({ status: 200, body: "user a/b" })
      // Node refuses headers over its limit (16 KiB) before any handler runs.
      expect(results.hugeHeader.status).toBe(431)
      expect(results.manyCookies.status).toBe(200)
      expect(results.after).toEqual({ status: 200, body: "ok" })
    }).pipe(Effect.provide(server))
  )
})
