import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, HttpError, Middleware, Route, Router } from "../src/index.ts"
import { admin, auth, bearer, CurrentUser, Session, session, Users, UsersLive } from "./fixtures.ts"

const fakeUsers = Context.make(Users, {
  find: (id: string) =>
    Effect.succeed(id === "9" ? { id: "9", name: "Fake", role: "member" as const } : undefined)
})

describe("Middleware.test (one middleware alone, fake upstream)", () => {
  it.effect("reports what it provided", () =>
    Effect.gen(function* () {
      const result = yield* Middleware.test(auth, {
        request: new Request("http://x/"),
        context: Context.add(fakeUsers, Session, { userId: "9" })
      })
      expect(result.response.status).toBe(204)
      expect(Context.get(result.provided!, CurrentUser)).toEqual({ id: "9", name: "Fake", role: "member" })
    })
  )

  it.effect("reports how it failed", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Middleware.test(auth, {
          request: new Request("http://x/"),
          context: Context.add(fakeUsers, Session, { userId: "1" })
        })
      )
      expect(error._tag).toBe("Unauthorized")
    })
  )

  it.effect("refine provides the narrower service or fails with Forbidden", () =>
    Effect.gen(function* () {
      const adminUser = { id: "1", name: "Ada", role: "admin" as const }
      const ok = yield* Middleware.test(admin, {
        request: new Request("http://x/"),
        context: Context.make(CurrentUser, adminUser)
      })
      expect(ok.provided).toBeDefined()
      const error = yield* Effect.flip(
        Middleware.test(admin, {
          request: new Request("http://x/"),
          context: Context.make(CurrentUser, { id: "2", name: "Bob", role: "member" })
        })
      )
      expect(error._tag).toBe("Forbidden")
    })
  )
})

describe("Middleware.oneOf", () => {
  const seen: Array<string> = []
  const route = Route.get(
    "/who",
    Effect.gen(function* () {
      const user = yield* CurrentUser
      const matched = yield* Middleware.Matched
      seen.push(matched.name)
      return HttpServerResponse.jsonUnsafe({ user: user.id, via: matched.name })
    })
  )
  const failing = Route.get(
    "/fails",
    Effect.flatMap(CurrentUser, () => Effect.fail(new HttpError.NotFound()))
  )
  const anyUser = Middleware.oneOf({ bearer, session: auth })
  const app = Router.make([route, failing]).pipe(Router.use(session, anyUser))
  const { handler } = App.toWebHandler(app, UsersLive)

  it("takes the first alternative that succeeds and says which", async () => {
    const viaBearer = await handler(
      new Request("http://x/who", { headers: { authorization: "Bearer token-1" } })
    )
    expect(await viaBearer.json()).toEqual({ user: "1", via: "bearer" })
    const viaSession = await handler(new Request("http://x/who", { headers: { cookie: "sid=2" } }))
    expect(await viaSession.json()).toEqual({ user: "2", via: "session" })
  })

  it("aggregates all failures: 401 with every challenge", async () => {
    const res = await handler(new Request("http://x/who"))
    expect(res.status).toBe(401)
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="test", Cookie realm="test"')
  })

  it("never retries the handler's own failure with the next alternative", async () => {
    seen.length = 0
    const res = await handler(
      new Request("http://x/fails", { headers: { authorization: "Bearer token-1", cookie: "sid=2" } })
    )
    expect(res.status).toBe(404)
  })

  it("describes itself in the manifest", () => {
    const [entry] = Router.manifest(app).filter((r) => r.path === "/who")
    expect(entry!.middleware.map((m) => m.name)).toEqual(["session", "oneOf(bearer, session)"])
    expect(entry!.provides).toContain("test/CurrentUser")
    expect(entry!.provides).toContain("@strata/core/Middleware/Matched")
  })
})

describe("Middleware order", () => {
  const trace: Array<string> = []
  const tracer = (name: string) =>
    Middleware.make({
      name,
      apply: (next) =>
        Effect.gen(function* () {
          trace.push(`${name}:in`)
          const response = yield* next
          trace.push(`${name}:out`)
          return response
        })
    })
  const app = Router.make([
    Router.group("/g", [
      Route.get(
        "/",
        Effect.sync(() => (trace.push("handler"), HttpServerResponse.empty()))
      )
    ]).pipe(Router.use(tracer("group1")), Router.use(tracer("group2")))
  ]).pipe(Router.use(tracer("app1"), tracer("app2")))

  it("runs the first written outermost, at app and router level alike", async () => {
    const { handler } = App.toWebHandler(app, UsersLive)
    await handler(new Request("http://x/g"))
    expect(trace).toEqual([
      "app1:in",
      "app2:in",
      "group1:in",
      "group2:in",
      "handler",
      "group2:out",
      "group1:out",
      "app2:out",
      "app1:out"
    ])
  })
})
