import { NodeServices } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as UrlParams from "effect/http/UrlParams"
import { App, Middleware, Route, Router, Session } from "../src/index.ts"
import * as Csrf from "../src/Csrf.ts"
import { sign } from "../src/internal/signing.ts"

class AppSession extends Session.Service<AppSession>()("test/CsrfSession", {
  schema: Schema.Struct({ userId: Schema.optional(Schema.String) })
}) {}

const key1 = Redacted.make("k1-0123456789abcdef0123456789abcdef")
const key2 = Redacted.make("k2-0123456789abcdef0123456789abcdef")
const foreign = Redacted.make("zz-0123456789abcdef0123456789abcdef")

const tokenJson = Effect.map(Csrf.token, (token) => HttpServerResponse.jsonUnsafe({ token }))

const basic = [
  Route.all("/form", tokenJson),
  Route.get("/page", HttpServerResponse.text("no form here")),
  Route.post("/submit", HttpServerResponse.text("done"))
]

// Read the body the middleware has read already.
const urlencoded = Route.post(
  "/urlencoded",
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const params = yield* request.urlParamsBody
    return HttpServerResponse.jsonUnsafe(UrlParams.toRecord(params))
  })
)
const multipart = Route.post(
  "/multipart",
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const form = yield* request.multipart
    return HttpServerResponse.jsonUnsafe({ title: form["title"], csrf: form["_csrf"] })
  })
)

const routes = [
  ...basic,
  urlencoded,
  multipart,
  // Logs in (a new session id) and renders the next page's token.
  Route.post(
    "/login",
    Effect.gen(function* () {
      const session = yield* AppSession
      yield* session.regenerate
      yield* session.set("userId", "u1")
      return HttpServerResponse.jsonUnsafe({ token: yield* Csrf.token })
    })
  ),
  // Logs in without rendering a token.
  Route.post(
    "/login-quiet",
    Effect.gen(function* () {
      const session = yield* AppSession
      yield* session.regenerate
      return HttpServerResponse.text("in")
    })
  )
]

/** Records why the CSRF check refused a request; the response is left as it is. */
const observe = (reasons: Array<Csrf.Reason>) =>
  Middleware.make({
    name: "observe",
    apply: (next) =>
      Effect.onError(next, (cause) =>
        Effect.sync(() => {
          const error = Cause.findErrorOption(cause)
          if (Option.isSome(error) && error.value instanceof Csrf.CsrfError) reasons.push(error.value.reason)
        })
      )
  })

const sessionMiddleware = Session.middleware(AppSession, { cookie: { keys: [key1], secure: false } })

const makeSynchronizer = (options: Omit<Csrf.SynchronizerOptions<AppSession, any, any>, "session"> = {}) => {
  const reasons: Array<Csrf.Reason> = []
  const app = Router.make(routes).pipe(
    Router.use(sessionMiddleware, observe(reasons), Csrf.synchronizer({ session: AppSession, ...options }))
  )
  return { ...App.toWebHandler(app, Layer.merge(Session.layerMemory(), NodeServices.layer)), reasons }
}

const cookieOf = (res: Response) => {
  const header = res.headers.get("set-cookie")
  return header === null ? undefined : header.split(";")[0]!
}

/** A client of the synchronizer app: a session cookie and its token. */
const login = async (handler: (request: Request) => Promise<Response>) => {
  const res = await handler(new Request("http://x/form"))
  const { token } = (await res.json()) as { token: string }
  return { cookie: cookieOf(res)!, token }
}

const post = (path: string, headers: Record<string, string>, body?: BodyInit) =>
  new Request(`http://x${path}`, { method: "POST", headers, ...(body === undefined ? {} : { body }) })

describe("Csrf.synchronizer", () => {
  it("lets safe methods through without a token and gives them one", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    for (const method of ["GET", "HEAD", "OPTIONS"]) {
      const res = await handler(new Request("http://x/form", { method }))
      expect(res.status).toBe(200)
      // The token was read, so the session now exists and holds it.
      expect(cookieOf(res)).toMatch(/^sid=/)
      if (method !== "HEAD") expect((await res.json()).token).toMatch(/^[\w-]{43}$/)
    }
    expect(reasons).toEqual([])
    await dispose()
  })

  it("creates no session for a page that never reads the token", async () => {
    const { handler, dispose } = makeSynchronizer()
    const res = await handler(new Request("http://x/page"))
    expect(res.status).toBe(200)
    expect(res.headers.get("set-cookie")).toBeNull()
    await dispose()
  })

  it("keeps one token for the session", async () => {
    const { handler, dispose } = makeSynchronizer()
    const { cookie, token } = await login(handler)
    const again = await handler(new Request("http://x/form", { headers: { cookie } }))
    expect((await again.json()).token).toBe(token)
    await dispose()
  })

  it("accepts a POST with the session's token in the header", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    const { cookie, token } = await login(handler)
    const res = await handler(post("/submit", { cookie, "x-csrf-token": token, origin: "http://x" }))
    expect(res.status).toBe(200)
    expect(await res.text()).toBe("done")
    expect(reasons).toEqual([])
    await dispose()
  })

  it("accepts the token in a urlencoded form field, and the handler still reads the body", async () => {
    const { handler, dispose } = makeSynchronizer()
    const { cookie, token } = await login(handler)
    const res = await handler(
      post(
        "/urlencoded",
        { cookie, origin: "http://x", "content-type": "application/x-www-form-urlencoded" },
        new URLSearchParams({ title: "hello & bye", _csrf: token }).toString()
      )
    )
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ title: "hello & bye", _csrf: token })
    await dispose()
  })

  it("accepts the token in a multipart form field, and the handler still reads the body", async () => {
    const { handler, dispose } = makeSynchronizer()
    const { cookie, token } = await login(handler)
    const form = new FormData()
    form.set("title", "report")
    form.set("_csrf", token)
    form.set("file", new Blob(["contents"], { type: "text/plain" }), "a.txt")
    const res = await handler(post("/multipart", { cookie, origin: "http://x" }, form))
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ title: "report", csrf: token })
    await dispose()
  })

  it("refuses a POST without a token: 403 missing-token, a body that says only Forbidden", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    const { cookie } = await login(handler)
    const res = await handler(post("/submit", { cookie, origin: "http://x" }))
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({ error: "CsrfError", message: "Forbidden" })
    // A form with other fields but no token field is refused the same way.
    const form = await handler(
      post(
        "/urlencoded",
        { cookie, origin: "http://x", "content-type": "application/x-www-form-urlencoded" },
        "title=x"
      )
    )
    expect(form.status).toBe(403)
    // And a JSON body is never searched for the token.
    const json = await handler(
      post("/submit", { cookie, "content-type": "application/json" }, '{"_csrf":"x"}')
    )
    expect(json.status).toBe(403)
    expect(reasons).toEqual(["missing-token", "missing-token", "missing-token"])
    await dispose()
  })

  it("refuses a wrong token: 403 token-mismatch, without echoing either token", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    const { cookie, token } = await login(handler)
    const wrong = `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`
    const res = await handler(post("/submit", { cookie, "x-csrf-token": wrong }))
    expect(res.status).toBe(403)
    const body = await res.text()
    expect(body).not.toContain(token)
    expect(body).not.toContain(wrong)
    expect(reasons).toEqual(["token-mismatch"])
    await dispose()
  })

  it("refuses a token of another session, and any token without a session", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    const alice = await login(handler)
    const mallory = await login(handler)
    expect(
      (await handler(post("/submit", { cookie: alice.cookie, "x-csrf-token": mallory.token }))).status
    ).toBe(403)
    expect((await handler(post("/submit", { "x-csrf-token": mallory.token }))).status).toBe(403)
    expect(reasons).toEqual(["token-mismatch", "token-mismatch"])
    await dispose()
  })

  it("refuses a cross-origin Origin even with a valid token: 403 bad-origin", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    const { cookie, token } = await login(handler)
    for (const origin of ["http://evil.example", "https://x", "http://x:8080", "null", "garbage"]) {
      const res = await handler(post("/submit", { cookie, "x-csrf-token": token, origin }))
      expect(res.status).toBe(403)
    }
    // The origin is checked first: the body of a cross-origin request is not read.
    expect(reasons).toEqual(["bad-origin", "bad-origin", "bad-origin", "bad-origin", "bad-origin"])
    await dispose()
  })

  it("falls back to the Referer's origin when Origin is absent", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    const { cookie, token } = await login(handler)
    const same = await handler(
      post("/submit", { cookie, "x-csrf-token": token, referer: "http://x/form?a=1" })
    )
    expect(same.status).toBe(200)
    const cross = await handler(
      post("/submit", { cookie, "x-csrf-token": token, referer: "http://evil.example/x" })
    )
    expect(cross.status).toBe(403)
    // Origin wins over Referer.
    const both = await handler(
      post("/submit", { cookie, "x-csrf-token": token, origin: "http://evil.example", referer: "http://x/" })
    )
    expect(both.status).toBe(403)
    expect(reasons).toEqual(["bad-origin", "bad-origin"])
    await dispose()
  })

  it("accepts a request with neither Origin nor Referer on the token alone, unless requireOrigin", async () => {
    const lenient = makeSynchronizer()
    const a = await login(lenient.handler)
    expect(
      (await lenient.handler(post("/submit", { cookie: a.cookie, "x-csrf-token": a.token }))).status
    ).toBe(200)
    await lenient.dispose()

    const strict = makeSynchronizer({ requireOrigin: true })
    const b = await login(strict.handler)
    const bare = await strict.handler(post("/submit", { cookie: b.cookie, "x-csrf-token": b.token }))
    expect(bare.status).toBe(403)
    const withOrigin = await strict.handler(
      post("/submit", { cookie: b.cookie, "x-csrf-token": b.token, origin: "http://x" })
    )
    expect(withOrigin.status).toBe(200)
    const withReferer = await strict.handler(
      post("/submit", { cookie: b.cookie, "x-csrf-token": b.token, referer: "http://x/form" })
    )
    expect(withReferer.status).toBe(200)
    expect(strict.reasons).toEqual(["bad-origin"])
    await strict.dispose()
  })

  it("allows the configured origins (a list or a predicate) besides the request's own", async () => {
    const listed = makeSynchronizer({ origins: ["https://app.example/"] })
    const a = await login(listed.handler)
    for (const [origin, status] of [
      ["https://app.example", 200],
      ["http://x", 200],
      ["https://other.example", 403]
    ] as const) {
      const res = await listed.handler(post("/submit", { cookie: a.cookie, "x-csrf-token": a.token, origin }))
      expect(res.status).toBe(status)
    }
    await listed.dispose()

    const predicate = makeSynchronizer({ origins: (origin) => origin.endsWith(".trusted.example") })
    const b = await login(predicate.handler)
    for (const [origin, status] of [
      ["https://a.trusted.example", 200],
      ["https://trusted.example.evil", 403]
    ] as const) {
      const res = await predicate.handler(
        post("/submit", { cookie: b.cookie, "x-csrf-token": b.token, origin })
      )
      expect(res.status).toBe(status)
    }
    await predicate.dispose()
  })

  it("takes the header name and field name from the options", async () => {
    const { handler, dispose } = makeSynchronizer({ header: "X-XSRF-Token", field: "authenticity_token" })
    const { cookie, token } = await login(handler)
    expect((await handler(post("/submit", { cookie, "x-xsrf-token": token }))).status).toBe(200)
    expect((await handler(post("/submit", { cookie, "x-csrf-token": token }))).status).toBe(403)
    const res = await handler(
      post(
        "/urlencoded",
        { cookie, "content-type": "application/x-www-form-urlencoded" },
        `authenticity_token=${token}`
      )
    )
    expect(res.status).toBe(200)
    await dispose()
  })

  it("replaces the token when the session is regenerated (login)", async () => {
    const { handler, dispose, reasons } = makeSynchronizer()
    const before = await login(handler)
    // The login page renders the new token after regenerating.
    const res = await handler(post("/login", { cookie: before.cookie, "x-csrf-token": before.token }))
    expect(res.status).toBe(200)
    const after = { cookie: cookieOf(res)!, token: ((await res.json()) as { token: string }).token }
    expect(after.token).not.toBe(before.token)
    expect(
      (await handler(post("/submit", { cookie: after.cookie, "x-csrf-token": before.token }))).status
    ).toBe(403)
    expect(
      (await handler(post("/submit", { cookie: after.cookie, "x-csrf-token": after.token }))).status
    ).toBe(200)

    // A login that renders no token still drops the old one.
    const quiet = await handler(post("/login-quiet", { cookie: after.cookie, "x-csrf-token": after.token }))
    const cookie = cookieOf(quiet)!
    expect((await handler(post("/submit", { cookie, "x-csrf-token": after.token }))).status).toBe(403)
    const fresh = (
      (await (await handler(new Request("http://x/form", { headers: { cookie } }))).json()) as {
        token: string
      }
    ).token
    expect(fresh).not.toBe(after.token)
    expect((await handler(post("/submit", { cookie, "x-csrf-token": fresh }))).status).toBe(200)
    expect(reasons).toEqual(["token-mismatch", "token-mismatch"])
    await dispose()
  })

  it("cannot read a multipart token without a file system, and says why", async () => {
    const reasons: Array<Csrf.Reason> = []
    const app = Router.make(basic).pipe(
      Router.use(sessionMiddleware, observe(reasons), Csrf.synchronizer({ session: AppSession }))
    )
    const { handler, dispose } = App.toWebHandler(app, Session.layerMemory())
    const { cookie, token } = await login(handler)
    const form = new FormData()
    form.set("_csrf", token)
    expect((await handler(post("/submit", { cookie }, form))).status).toBe(403)
    expect((await handler(post("/submit", { cookie, "x-csrf-token": token }, form))).status).toBe(200)
    expect(reasons).toEqual(["missing-token"])
    await dispose()
  })

  it("declares what it provides, requires and raises in the manifest", () => {
    const app = Router.make(basic).pipe(
      Router.use(sessionMiddleware, Csrf.synchronizer({ session: AppSession }))
    )
    const csrf = Router.manifest(app)[0]!.middleware[1]!
    expect(csrf).toEqual({
      name: "csrf-synchronizer",
      provides: ["@strata/core/Csrf/Token"],
      requires: ["test/CsrfSession"],
      raises: ["CsrfError", "HttpServerError", "MultipartError"],
      handles: []
    })
  })

  it("refuses an origin list entry that is not an origin, at start", () => {
    expect(() => Csrf.synchronizer({ session: AppSession, origins: ["app.example"] })).toThrow(
      "Csrf: not an origin: app.example"
    )
  })
})

const makeDoubleSubmit = (options: Partial<Csrf.DoubleSubmitOptions> = {}) => {
  const reasons: Array<Csrf.Reason> = []
  const app = Router.make([...basic, urlencoded]).pipe(
    Router.use(observe(reasons), Csrf.doubleSubmit({ keys: [key1], cookie: { secure: false }, ...options }))
  )
  return { ...App.toWebHandler(app, Layer.empty), reasons }
}

describe("Csrf.doubleSubmit", () => {
  it("sets a signed HttpOnly cookie when a handler reads the token, and keeps it", async () => {
    const { handler, dispose, reasons } = makeDoubleSubmit()
    expect((await handler(new Request("http://x/page"))).headers.get("set-cookie")).toBeNull()
    const res = await handler(new Request("http://x/form"))
    const { token } = (await res.json()) as { token: string }
    expect(res.headers.get("set-cookie")).toMatch(
      /^csrf=csrf\.[\w-]{43}\.[\w-]+; Path=\/; HttpOnly; SameSite=Lax$/
    )
    const cookie = cookieOf(res)!
    expect(cookie).toContain(token)
    const again = await handler(new Request("http://x/form", { headers: { cookie } }))
    expect((await again.json()).token).toBe(token)
    expect(again.headers.get("set-cookie")).toBeNull()
    expect(
      (await handler(post("/submit", { cookie, "x-csrf-token": token, origin: "http://x" }))).status
    ).toBe(200)
    expect(reasons).toEqual([])
    await dispose()
  })

  it("names the cookie __Host-csrf when secure", async () => {
    const { handler, dispose } = makeDoubleSubmit({ cookie: { secure: true } })
    const res = await handler(new Request("https://x/form"))
    expect(res.headers.get("set-cookie")).toMatch(
      /^__Host-csrf=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Lax$/
    )
    await dispose()
    expect(() => Csrf.doubleSubmit({ keys: [key1], cookie: { name: "__Host-x", secure: false } })).toThrow()
    expect(() => Csrf.doubleSubmit({ keys: [key1], cookie: { sameSite: "none", secure: false } })).toThrow()
    expect(() => Csrf.doubleSubmit({ keys: Redacted.make("short") })).toThrow()
  })

  it("refuses a header that differs from the cookie's token, and a missing one", async () => {
    const { handler, dispose, reasons } = makeDoubleSubmit()
    const a = await login(handler)
    const b = await login(handler)
    expect((await handler(post("/submit", { cookie: a.cookie, "x-csrf-token": b.token }))).status).toBe(403)
    expect((await handler(post("/submit", { cookie: a.cookie }))).status).toBe(403)
    // A token without its cookie.
    expect((await handler(post("/submit", { "x-csrf-token": a.token }))).status).toBe(403)
    expect(reasons).toEqual(["token-mismatch", "missing-token", "token-mismatch"])
    await dispose()
  })

  it("refuses a cookie whose signature does not verify", async () => {
    const { handler, dispose, reasons } = makeDoubleSubmit()
    const { cookie, token } = await login(handler)
    const tampered = `${cookie.slice(0, -1)}${cookie.endsWith("A") ? "B" : "A"}`
    expect((await handler(post("/submit", { cookie: tampered, "x-csrf-token": token }))).status).toBe(403)
    // A cookie the attacker made up, signed with a key the app does not have…
    const chosen = "attacker-chosen-token"
    const forged = `csrf=${sign(`csrf.${chosen}`, [foreign])}`
    expect((await handler(post("/submit", { cookie: forged, "x-csrf-token": chosen }))).status).toBe(403)
    // …or a value the same keys signed for another purpose (a session id), or unsigned.
    const other = `csrf=${sign(chosen, [key1])}`
    expect((await handler(post("/submit", { cookie: other, "x-csrf-token": chosen }))).status).toBe(403)
    expect(
      (await handler(post("/submit", { cookie: `csrf=${chosen}`, "x-csrf-token": chosen }))).status
    ).toBe(403)
    expect(reasons).toEqual(["token-mismatch", "token-mismatch", "token-mismatch", "token-mismatch"])
    await dispose()
  })

  it("accepts cookies signed with an older key after rotation, and signs new ones with the newest", async () => {
    const old = makeDoubleSubmit({ keys: [key1] })
    const { cookie, token } = await login(old.handler)
    await old.dispose()
    const rotated = makeDoubleSubmit({ keys: [key2, key1] })
    expect((await rotated.handler(post("/submit", { cookie, "x-csrf-token": token }))).status).toBe(200)
    const fresh = await login(rotated.handler)
    const retired = makeDoubleSubmit({ keys: [key2] })
    expect(
      (await retired.handler(post("/submit", { cookie: fresh.cookie, "x-csrf-token": fresh.token }))).status
    ).toBe(200)
    expect((await retired.handler(post("/submit", { cookie, "x-csrf-token": token }))).status).toBe(403)
    await rotated.dispose()
    await retired.dispose()
  })

  it("checks the origin and reads the form field as the synchronizer does", async () => {
    const { handler, dispose, reasons } = makeDoubleSubmit()
    const { cookie, token } = await login(handler)
    expect(
      (await handler(post("/submit", { cookie, "x-csrf-token": token, origin: "http://evil.example" })))
        .status
    ).toBe(403)
    const res = await handler(
      post(
        "/urlencoded",
        { cookie, referer: "http://x/form", "content-type": "application/x-www-form-urlencoded" },
        `_csrf=${token}&n=1`
      )
    )
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ _csrf: token, n: "1" })
    expect(reasons).toEqual(["bad-origin"])
    await dispose()
  })
})

describe("Csrf.hiddenInput", () => {
  it("escapes the token and the field name", () => {
    expect(Csrf.hiddenInput("abc-_123")).toBe('<input type="hidden" name="_csrf" value="abc-_123">')
    expect(Csrf.hiddenInput(`"><script>&'`, 'a"b')).toBe(
      '<input type="hidden" name="a&quot;b" value="&quot;&gt;&lt;script&gt;&amp;&#39;">'
    )
  })
})
