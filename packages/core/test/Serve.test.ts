import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { createServer } from "node:http"
import { App, Logger, RequestId, Route, Router } from "../src/index.ts"
import { auth, CurrentUser, session, UsersLive } from "./fixtures.ts"

const app = Router.make([
  Route.get("/health", HttpServerResponse.text("ok")),
  Router.group("/api", [
    Route.get(
      "/me",
      Effect.map(CurrentUser, (u) => HttpServerResponse.jsonUnsafe(u))
    )
  ]).pipe(Router.use(session, auth))
]).pipe(Router.use(RequestId.middleware(), Logger.middleware()))

// A real socket on 127.0.0.1, so the Node adapter is exercised, not only the web handler.
const serverLayer = App.serve(app).pipe(
  Layer.provide(UsersLive),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const baseUrl = Effect.map(HttpServer.HttpServer, (server) => HttpServer.formatAddress(server.address))

describe("App.serve over a real socket", () => {
  it.live("serves routes, middleware and app services through Node's http server", () =>
    Effect.gen(function* () {
      const url = yield* baseUrl
      const results = yield* Effect.promise(async () => {
        const health = await fetch(`${url}/health`)
        const me = await fetch(`${url}/api/me`, { headers: { cookie: "sid=1" } })
        const anonymous = await fetch(`${url}/api/me`, { headers: { "x-request-id": "sock-1" } })
        const missing = await fetch(`${url}/nowhere`)
        return {
          health: [health.status, await health.text()],
          me: [me.status, await me.json()],
          anonymous: [anonymous.status, anonymous.headers.get("x-request-id")],
          missing: missing.status
        }
      })
      expect(results).toEqual({
        health: [200, "ok"],
        me: [200, { id: "1", name: "Ada", role: "admin" }],
        anonymous: [401, "sock-1"],
        missing: 404
      })
    }).pipe(Effect.provide(serverLayer))
  )
})
