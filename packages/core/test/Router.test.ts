import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, HttpError, Logger, RequestId, Route, Router } from "../src/index.ts"
import { admin, auth, CurrentUser, session, UsersLive } from "./fixtures.ts"

const ok = HttpServerResponse.text("ok")

class Conflict extends Error {
  readonly _tag = "Conflict"
  readonly id: string
  constructor(id: string) {
    super("conflict")
    this.id = id
  }
}

const app = Router.make([
  Route.get("/health", ok),
  Router.group("/api", [
    Route.get("/me", Effect.as(CurrentUser, ok)),
    Route.put("/things/:id", Effect.fail(new Conflict("7"))),
    Router.group("/admin", [Route.del("/users/:id", Effect.as(CurrentUser, ok))]).pipe(Router.use(admin))
  ]).pipe(
    Router.use(session, auth),
    Router.catchTags({
      Conflict: (e) => HttpServerResponse.jsonUnsafe({ conflict: e.id }, { status: 409 })
    })
  )
]).pipe(Router.use(RequestId.middleware(), Logger.middleware()))

describe("Router", () => {
  it("lists every route with its middleware in order, what they provide and raise", () => {
    const manifest = Router.manifest(app)
    expect(manifest.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /health",
      "GET /api/me",
      "PUT /api/things/:id",
      "DELETE /api/admin/users/:id"
    ])
    const del = manifest[3]!
    expect(del.middleware.map((m) => m.name)).toEqual([
      "requestId",
      "logger",
      "session",
      "auth",
      "catchTags",
      "admin"
    ])
    expect(del.provides).toEqual(["@strata/core/RequestId", "test/Session", "test/CurrentUser", "test/Admin"])
    expect(del.raises).toEqual(["Unauthorized", "Forbidden"])
    expect(manifest[0]!.provides).toEqual(["@strata/core/RequestId"])
  })

  it("finds the routes that run no middleware providing a service", () => {
    expect(Router.routesWithout(app, CurrentUser)).toEqual(["GET /health"])
    expect(Router.routesWithout(app, CurrentUser, ["GET /health"])).toEqual([])
  })

  it("requireEverywhere throws at start, naming the routes", () => {
    const loose = Router.make([Route.get("/open", ok), Route.get("/also-open", ok)])
    expect(() => Router.requireEverywhere(loose as any, CurrentUser)).toThrow(
      "Routes without a middleware that provides test/CurrentUser: GET /open, GET /also-open"
    )
  })

  it("maps route errors with catchTags, locally", async () => {
    const { handler, dispose } = App.toWebHandler(app, UsersLive)
    const res = await handler(
      new Request("http://x/api/things/7", { method: "PUT", headers: { cookie: "sid=1" } })
    )
    expect(res.status).toBe(409)
    expect(await res.json()).toEqual({ conflict: "7" })
    await dispose()
  })

  it("joins prefixes like Effect's router", () => {
    expect(Router.joinPath("", "/a")).toBe("/a")
    expect(Router.joinPath("/api", "/")).toBe("/api")
    expect(Router.joinPath("/api", "*")).toBe("/api/*")
    expect(Router.joinPath("/api", "/x")).toBe("/api/x")
  })

  it("HttpError classes answer with their status, headers and body", async () => {
    const limited = Router.make([Route.get("/", Effect.fail(new HttpError.RateLimited({ retryAfter: 2.2 })))])
    const { handler, dispose } = App.toWebHandler(limited, UsersLive)
    const res = await handler(new Request("http://x/"))
    expect(res.status).toBe(429)
    expect(res.headers.get("retry-after")).toBe("3")
    expect(await res.json()).toEqual({ error: "RateLimited", message: "Too Many Requests" })
    await dispose()
  })
})
