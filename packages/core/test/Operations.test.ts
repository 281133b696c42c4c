import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as TestClock from "effect/testing/TestClock"
import * as Option from "effect/Option"
import { App, HttpError, Middleware, Route, Router } from "../src/index.ts"
import * as Cookies from "../src/Cookies.ts"
import * as Cors from "../src/Cors.ts"
import * as Observability from "../src/Observability.ts"
import * as SecurityHeaders from "../src/SecurityHeaders.ts"
import * as Timeout from "../src/Timeout.ts"
import * as TrustedProxy from "../src/TrustedProxy.ts"

const ok = HttpServerResponse.text("ok")

describe("SecurityHeaders", () => {
  const app = Router.make([
    Route.get("/", ok),
    Route.get("/own", HttpServerResponse.text("x", { headers: { "x-frame-options": "DENY" } })),
    Route.get("/fail", Effect.fail(new HttpError.NotFound()))
  ]).pipe(Router.use(SecurityHeaders.middleware({ referrerPolicy: "strict-origin", xssProtection: false })))
  const { handler } = App.toWebHandler(app, Layer.empty)

  it("sets the defaults, honours overrides and omissions, on error responses too", async () => {
    for (const path of ["/", "/fail"]) {
      const res = await handler(new Request(`http://x${path}`))
      expect(res.headers.get("content-security-policy")).toContain("default-src 'self'")
      expect(res.headers.get("strict-transport-security")).toBe("max-age=31536000; includeSubDomains")
      expect(res.headers.get("x-content-type-options")).toBe("nosniff")
      expect(res.headers.get("x-frame-options")).toBe("SAMEORIGIN")
      expect(res.headers.get("referrer-policy")).toBe("strict-origin")
      expect(res.headers.get("x-xss-protection")).toBeNull()
    }
  })

  it("keeps a header the handler set", async () => {
    expect((await handler(new Request("http://x/own"))).headers.get("x-frame-options")).toBe("DENY")
  })
})

describe("Timeout", () => {
  it.effect("interrupts the handler, runs its finalizers and answers 504", () =>
    Effect.gen(function* () {
      let finalized = false
      const slow = Effect.as(
        Effect.ensuring(
          Effect.sleep("10 seconds"),
          Effect.sync(() => (finalized = true))
        ),
        ok
      )
      const fiber = yield* Effect.forkChild(
        Effect.flip(
          Middleware.test(Timeout.middleware({ after: "2 seconds" }), {
            request: new Request("http://x/"),
            inner: slow
          })
        )
      )
      yield* TestClock.adjust("3 seconds")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("GatewayTimeout")
      expect(finalized).toBe(true)
    })
  )

  it.effect("can answer 503 instead, and leaves fast handlers alone", () =>
    Effect.gen(function* () {
      const fast = yield* Middleware.test(Timeout.middleware({ after: "1 second", status: 503 }), {
        request: new Request("http://x/"),
        inner: Effect.succeed(ok)
      })
      expect(fast.response.status).toBe(200)
      const fiber = yield* Effect.forkChild(
        Effect.flip(
          Middleware.test(Timeout.middleware({ after: "1 second", status: 503 }), {
            request: new Request("http://x/"),
            inner: Effect.as(Effect.never, ok)
          })
        )
      )
      yield* TestClock.adjust("2 seconds")
      expect((yield* Fiber.join(fiber))._tag).toBe("ServiceUnavailable")
    })
  )
})

describe("Cors", () => {
  const app = Router.make([
    Route.get("/public", ok),
    Router.group("/api", [Route.get("/data", ok), Route.post("/data", ok)]).pipe(
      Router.use(
        Cors.middleware({ origins: ["https://app.example"], credentials: true, maxAge: "10 minutes" })
      )
    )
  ])
  const { handler } = App.toWebHandler(app, Layer.empty)

  it("answers a preflight to a router-level CORS route with the allowed origin and max age", async () => {
    const res = await handler(
      new Request("http://x/api/data", {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "POST" }
      })
    )
    expect(res.status).toBe(204)
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example")
    expect(res.headers.get("access-control-allow-credentials")).toBe("true")
    expect(res.headers.get("access-control-max-age")).toBe("600")
  })

  it("adds the headers to actual requests from allowed origins only", async () => {
    const allowed = await handler(
      new Request("http://x/api/data", { headers: { origin: "https://app.example" } })
    )
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example")
    const other = await handler(
      new Request("http://x/api/data", { headers: { origin: "https://evil.example" } })
    )
    expect(other.headers.get("access-control-allow-origin")).toBeNull()
  })

  it("does not reach routes outside its router", async () => {
    const res = await handler(new Request("http://x/public", { headers: { origin: "https://app.example" } }))
    expect(res.headers.get("access-control-allow-origin")).toBeNull()
  })

  it("refuses any-origin with credentials at start", () => {
    expect(() => Cors.middleware({ origins: "*", credentials: true })).toThrow(/credentials/)
  })
})

describe("TrustedProxy", () => {
  // Stands in for the socket: gives the request the peer address a real connection would have.
  const peerIs = (peer: string) =>
    Middleware.make({
      name: "peer",
      apply: (next) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (r) =>
          Effect.provideService(
            next,
            HttpServerRequest.HttpServerRequest,
            r.modify({ remoteAddress: Option.some(peer), peerAddress: Option.some(peer) })
          )
        )
    })
  const run = (peer: string, headers: Record<string, string>) =>
    Effect.gen(function* () {
      const { response } = yield* Middleware.test(
        Middleware.stack(peerIs(peer), TrustedProxy.middleware({ trusted: ["10.0.0.0/8"] })),
        {
          request: new Request("http://x/ip", { headers }),
          inner: Effect.map(HttpServerRequest.HttpServerRequest, (r) =>
            HttpServerResponse.jsonUnsafe({ ip: Option.getOrNull(r.remoteAddress) })
          )
        }
      )
      return (yield* Effect.promise(() => response.json())) as { ip: string | null }
    })

  it.effect("takes the client from X-Forwarded-For behind a trusted proxy", () =>
    Effect.gen(function* () {
      expect(yield* run("10.0.0.5", { "x-forwarded-for": "203.0.113.7, 10.0.0.9" })).toEqual({
        ip: "203.0.113.7"
      })
    })
  )

  it.effect("takes the client from Forwarded (RFC 7239), IPv6 in brackets", () =>
    Effect.gen(function* () {
      expect(
        yield* run("10.0.0.5", { forwarded: 'for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9' })
      ).toEqual({
        ip: "2001:db8:cafe::17"
      })
    })
  )

  it.effect("ignores forwarding headers from an untrusted peer", () =>
    Effect.gen(function* () {
      expect(yield* run("198.51.100.1", { "x-forwarded-for": "1.2.3.4" })).toEqual({ ip: "198.51.100.1" })
      expect(yield* run("198.51.100.1", { forwarded: "for=1.2.3.4" })).toEqual({ ip: "198.51.100.1" })
    })
  )

  it("refuses a malformed network at start", () => {
    expect(() => TrustedProxy.middleware({ trusted: ["not-a-cidr"] })).toThrow(/not a network/)
  })
})

describe("Observability.metrics", () => {
  it("counts requests by method, route pattern and status", async () => {
    const app = Router.make([
      Route.get("/users/:id", ok),
      Route.get("/missing", Effect.fail(new HttpError.NotFound()))
    ]).pipe(Router.use(Observability.metrics(), Observability.tracing()))
    const { handler, dispose } = App.toWebHandler(app, Layer.empty)
    await handler(new Request("http://x/users/1"))
    await handler(new Request("http://x/users/2"))
    await handler(new Request("http://x/missing"))
    const count = (route: string, status: string) =>
      Effect.runSync(
        Metric.value(
          Metric.withAttributes(Observability.requests, {
            "http.request.method": "GET",
            "http.route": route,
            "http.response.status_code": status
          })
        )
      ).count
    expect(count("/users/:id", "200")).toBe(2)
    expect(count("/missing", "404")).toBe(1)
    await dispose()
  })
})

describe("Cookies", () => {
  const keys = [Redacted.make("cookie-key-0123456789abcdef0123456789ab")]
  const app = Router.make([
    Route.post(
      "/set",
      Effect.gen(function* () {
        const jar = yield* Cookies.Cookies
        yield* jar.set("plain", "v1")
        yield* jar.setSigned("signed", "v2", { maxAge: "1 hour" })
        return ok
      })
    ),
    Route.get(
      "/get",
      Effect.map(Cookies.Cookies, (jar) =>
        HttpServerResponse.jsonUnsafe({
          plain: jar.get("plain") ?? null,
          signed: jar.getSigned("signed") ?? null
        })
      )
    ),
    Route.post(
      "/clear",
      Effect.as(
        Effect.flatMap(Cookies.Cookies, (jar) => jar.clear("plain")),
        ok
      )
    ),
    Route.post(
      "/fail",
      Effect.flatMap(Cookies.Cookies, (jar) =>
        Effect.andThen(jar.set("seen", "1"), Effect.fail(new HttpError.Forbidden({})))
      )
    )
  ]).pipe(Router.use(Cookies.middleware({ keys })))
  const { handler } = App.toWebHandler(app, Layer.empty)

  it("sets plain and signed cookies with secure defaults and reads them back", async () => {
    const res = await handler(new Request("http://x/set", { method: "POST" }))
    const set = res.headers.getSetCookie()
    expect(set[0]).toBe("plain=v1; Path=/; HttpOnly; Secure; SameSite=Lax")
    expect(set[1]).toMatch(/^signed=v2\.[\w-]+; Max-Age=3600; Path=\/; HttpOnly; Secure; SameSite=Lax$/)
    const cookie = set.map((c) => c.split(";")[0]).join("; ")
    const read = await handler(new Request("http://x/get", { headers: { cookie } }))
    expect(await read.json()).toEqual({ plain: "v1", signed: "v2" })
  })

  it("rejects a forged or tampered signed cookie", async () => {
    for (const value of ["v2", "v2.AAAA", "v3.forged"]) {
      const read = await handler(new Request("http://x/get", { headers: { cookie: `signed=${value}` } }))
      expect((await read.json()).signed).toBeNull()
    }
  })

  it("clears a cookie, and sets cookies on error responses too", async () => {
    expect(
      (await handler(new Request("http://x/clear", { method: "POST" }))).headers.get("set-cookie")
    ).toMatch(/^plain=; Max-Age=0/)
    const failed = await handler(new Request("http://x/fail", { method: "POST" }))
    expect(failed.status).toBe(403)
    expect(failed.headers.get("set-cookie")).toMatch(/^seen=1/)
  })

  it("survives a huge and a malformed Cookie header", async () => {
    const huge = await handler(
      new Request("http://x/get", { headers: { cookie: `plain=${"x".repeat(8000)}` } })
    )
    expect(huge.status).toBe(200)
    const malformed = await handler(
      new Request("http://x/get", { headers: { cookie: ";;=;plain;=x; signed=%E0%A4%A" } })
    )
    expect(malformed.status).toBe(200)
    expect((await malformed.json()).signed).toBeNull()
  })
})

describe("SecurityHeaders and CSRF together", () => {
  it("default Referrer-Policy lets browsers send the real Origin on same-origin form posts", () => {
    // With `no-referrer` browsers send `Origin: null` on form posts, which the CSRF origin check refuses.
    expect(SecurityHeaders.headers()["referrer-policy"]).toBe("strict-origin-when-cross-origin")
  })
})
