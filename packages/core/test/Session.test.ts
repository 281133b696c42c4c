import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/testing/TestClock"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Middleware, Route, Router, Session } from "../src/index.ts"
import { sign } from "../src/internal/signing.ts"

class AppSession extends Session.Service<AppSession>()("test/AppSession", {
  schema: Schema.Struct({ userId: Schema.optional(Schema.String), visits: Schema.optional(Schema.Number) })
}) {}

const key1 = Redacted.make("k1-0123456789abcdef0123456789abcdef")
const key2 = Redacted.make("k2-0123456789abcdef0123456789abcdef")
const foreign = Redacted.make("zz-0123456789abcdef0123456789abcdef")

const routes = [
  Route.get(
    "/read",
    Effect.map(
      Effect.flatMap(AppSession, (s) => s.data),
      (d) => HttpServerResponse.jsonUnsafe(d)
    )
  ),
  Route.post(
    "/login",
    Effect.gen(function* () {
      const session = yield* AppSession
      yield* session.regenerate
      yield* session.set("userId", "u1")
      return HttpServerResponse.text("ok")
    })
  ),
  Route.post(
    "/visit",
    Effect.gen(function* () {
      const session = yield* AppSession
      yield* session.update((d) => ({ ...d, visits: (d.visits ?? 0) + 1 }))
      return HttpServerResponse.jsonUnsafe(yield* session.data)
    })
  ),
  Route.post(
    "/logout",
    Effect.as(
      Effect.flatMap(AppSession, (s) => s.destroy),
      HttpServerResponse.text("bye")
    )
  )
]

const make = (keys: ReadonlyArray<Redacted.Redacted<string>>, options: Partial<Session.Options> = {}) => {
  const app = Router.make(routes).pipe(
    Router.use(Session.middleware(AppSession, { cookie: { keys, secure: false }, ...options }))
  )
  return App.toWebHandler(app, Session.layerMemory())
}

const cookieOf = (res: Response) => {
  const header = res.headers.get("set-cookie")
  return header === null ? undefined : header.split(";")[0]!
}

const visit = (cookie: string | undefined, options: Partial<Session.Options>) =>
  Middleware.test(Session.middleware(AppSession, { cookie: { keys: [key1], secure: false }, ...options }), {
    request: new Request("http://x/", cookie === undefined ? {} : { headers: { cookie } }),
    inner: Effect.gen(function* () {
      const session = yield* AppSession
      yield* session.update((d) => ({ ...d, visits: (d.visits ?? 0) + 1 }))
      return HttpServerResponse.jsonUnsafe(yield* session.data)
    })
  })

describe("Session", () => {
  it("gives no cookie and writes nothing while the session is untouched", async () => {
    const { handler, dispose } = make([key1])
    const res = await handler(new Request("http://x/read"))
    expect(await res.json()).toEqual({})
    expect(res.headers.get("set-cookie")).toBeNull()
    await dispose()
  })

  it("sets a signed, HttpOnly, SameSite=Lax cookie on the first write and reads it back", async () => {
    const { handler, dispose } = make([key1])
    const first = await handler(new Request("http://x/visit", { method: "POST" }))
    const setCookie = first.headers.get("set-cookie")!
    expect(setCookie).toMatch(/^sid=[\w-]+\.[\w-]+; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Lax$/)
    const second = await handler(
      new Request("http://x/visit", { method: "POST", headers: { cookie: cookieOf(first)! } })
    )
    expect(await second.json()).toEqual({ visits: 2 })
    // The id did not change, so no new Set-Cookie.
    expect(second.headers.get("set-cookie")).toBeNull()
    await dispose()
  })

  it("rejects tampered and foreign-key cookies (fresh session), accepts rotated keys", async () => {
    const { handler: oldKeys, dispose: d1 } = make([key1])
    const login = await oldKeys(new Request("http://x/visit", { method: "POST" }))
    const cookie = cookieOf(login)!
    const [name, value] = cookie.split("=") as [string, string]
    const tampered = `${name}=${value.slice(0, -2)}${value.endsWith("A") ? "B" : "A"}`
    expect(
      await (await oldKeys(new Request("http://x/read", { headers: { cookie: tampered } }))).json()
    ).toEqual({})
    const id = value.slice(0, value.lastIndexOf("."))
    const forged = `sid=${sign(id, [foreign])}`
    expect(
      await (await oldKeys(new Request("http://x/read", { headers: { cookie: forged } }))).json()
    ).toEqual({})
    expect(await (await oldKeys(new Request("http://x/read", { headers: { cookie } }))).json()).toEqual({
      visits: 1
    })
    await d1()
  })

  it("regenerate gives a new id for the same data and the old id stops working (fixation)", async () => {
    const { handler, dispose } = make([key1])
    const anon = await handler(new Request("http://x/visit", { method: "POST" }))
    const before = cookieOf(anon)!
    const login = await handler(
      new Request("http://x/login", { method: "POST", headers: { cookie: before } })
    )
    const after = cookieOf(login)!
    expect(after).not.toBe(before)
    expect(
      await (await handler(new Request("http://x/read", { headers: { cookie: after } }))).json()
    ).toEqual({
      userId: "u1",
      visits: 1
    })
    expect(
      await (await handler(new Request("http://x/read", { headers: { cookie: before } }))).json()
    ).toEqual({})
    await dispose()
  })

  it("destroy forgets the session and clears the cookie", async () => {
    const { handler, dispose } = make([key1])
    const cookie = cookieOf(await handler(new Request("http://x/login", { method: "POST" })))!
    const out = await handler(new Request("http://x/logout", { method: "POST", headers: { cookie } }))
    expect(out.headers.get("set-cookie")).toMatch(/^sid=; Max-Age=0/)
    expect(await (await handler(new Request("http://x/read", { headers: { cookie } }))).json()).toEqual({})
    await dispose()
  })

  it("refuses short keys at start", () => {
    expect(() => Session.middleware(AppSession, { cookie: { keys: Redacted.make("short") } })).toThrow(
      "signing keys must be at least 32 bytes long"
    )
  })

  it("signs with the newest key and still accepts an older one", async () => {
    // Two routers share one store: one still on the old key list, one rotated to [key2, key1].
    const app = Router.make([
      Router.group("/old", routes).pipe(
        Router.use(Session.middleware(AppSession, { cookie: { keys: [key1], secure: false } }))
      ),
      Router.group("/new", routes).pipe(
        Router.use(Session.middleware(AppSession, { cookie: { keys: [key2, key1], secure: false } }))
      )
    ])
    const { handler, dispose } = App.toWebHandler(app, Session.layerMemory())
    const oldCookie = cookieOf(await handler(new Request("http://x/old/visit", { method: "POST" })))!
    expect(
      await (await handler(new Request("http://x/new/read", { headers: { cookie: oldCookie } }))).json()
    ).toEqual({
      visits: 1
    })
    const newCookie = cookieOf(
      await handler(new Request("http://x/new/login", { method: "POST", headers: { cookie: oldCookie } }))
    )!
    expect(
      await (await handler(new Request("http://x/new/read", { headers: { cookie: newCookie } }))).json()
    ).toEqual({
      userId: "u1",
      visits: 1
    })
    // Signed with key2, which the old list does not know.
    expect(
      await (await handler(new Request("http://x/old/read", { headers: { cookie: newCookie } }))).json()
    ).toEqual({})
    await dispose()
  })

  describe("expiry (TestClock)", () => {
    const run = (options: Partial<Session.Options>, steps: ReadonlyArray<Duration.Input>) =>
      Effect.gen(function* () {
        const store = yield* Layer.build(Session.layerMemory())
        let cookie: string | undefined
        const seen: Array<unknown> = []
        for (const step of steps) {
          yield* TestClock.adjust(step)
          const { response } = yield* Effect.provideContext(visit(cookie, options), store)
          seen.push(
            (yield* Effect.promise(() => response.json()) as Effect.Effect<{ visits: number }>).visits
          )
          cookie = cookieOf(response) ?? cookie
        }
        return seen
      }).pipe(Effect.scoped)

    it.effect("an idle session expires; activity keeps it alive (rolling)", () =>
      Effect.gen(function* () {
        expect(
          yield* run({ idleTimeout: "10 minutes" }, [0, "9 minutes", "9 minutes", "11 minutes"])
        ).toEqual([1, 2, 3, 1])
      })
    )

    it.effect("the absolute timeout ends even an active session", () =>
      Effect.gen(function* () {
        expect(
          yield* run({ idleTimeout: "10 minutes", absoluteTimeout: "20 minutes" }, [
            0,
            "9 minutes",
            "9 minutes",
            "3 minutes"
          ])
        ).toEqual([1, 2, 3, 1])
      })
    )
  })
})
