import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Conditional from "../src/Conditional.ts"
import { App, Middleware, Route, Router } from "../src/index.ts"

const doc = JSON.stringify({ title: "hello", items: [1, 2, 3] })
const lastModified = new Date(Date.UTC(2024, 0, 2, 3, 4, 5)).toUTCString()
const encoder = new TextEncoder()

const app = Router.make([
  Route.get(
    "/doc",
    HttpServerResponse.text(doc, {
      contentType: "application/json",
      headers: { "cache-control": "private, max-age=0", vary: "Cookie", "x-other": "dropped on 304" }
    })
  ),
  Route.get("/other", HttpServerResponse.text("another body")),
  Route.get("/own", HttpServerResponse.text("versioned", { headers: { etag: '"v1"' } })),
  Route.get("/dated", HttpServerResponse.text("dated", { headers: { "last-modified": lastModified } })),
  Route.get(
    "/stream",
    HttpServerResponse.stream(Stream.make(encoder.encode("a"), encoder.encode("b")), {
      contentType: "text/plain"
    })
  ),
  Route.get(
    "/stream-tagged",
    HttpServerResponse.stream(Stream.make(encoder.encode("a")), {
      contentType: "text/plain",
      headers: { etag: 'W/"s1"' }
    })
  ),
  Route.post("/doc", HttpServerResponse.text(doc)),
  Route.get("/created", HttpServerResponse.text(doc, { status: 201 })),
  Route.get("/cookie", HttpServerResponse.text(doc).pipe(HttpServerResponse.setCookieUnsafe("seen", "1")))
]).pipe(Router.use(Conditional.middleware()))

describe("Conditional", () => {
  const { handler } = App.toWebHandler(app, Layer.empty)
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    handler(new Request(`http://x${path}`, { method, headers }))

  it("adds a strong ETag hashed from the body, equal for equal bodies", async () => {
    const a = await get("/doc")
    const b = await get("/doc")
    const other = await get("/other")
    const etag = a.headers.get("etag")!
    expect(etag).toMatch(/^"[0-9a-f]+-[A-Za-z0-9_-]{32}"$/)
    expect(b.headers.get("etag")).toBe(etag)
    expect(other.headers.get("etag")).not.toBe(etag)
    expect(etag).toBe(Conditional.etagOf(encoder.encode(doc)))
    expect(await a.text()).toBe(doc)
  })

  it("answers If-None-Match with 304, with and without quotes, weak prefixes and lists", async () => {
    const etag = (await get("/doc")).headers.get("etag")!
    const bare = etag.slice(1, -1)
    for (const ifNoneMatch of [
      etag,
      `W/${etag}`,
      `w/${etag}`,
      bare,
      `W/${bare}`,
      `"a", ${etag}, "b"`,
      `"a",W/${etag}`,
      `  "x,y" , ${etag}`,
      "*"
    ]) {
      const res = await get("/doc", { "if-none-match": ifNoneMatch })
      expect(res.status, ifNoneMatch).toBe(304)
      expect(await res.text()).toBe("")
      expect(res.headers.get("etag")).toBe(etag)
      expect(res.headers.get("cache-control")).toBe("private, max-age=0")
      expect(res.headers.get("vary")).toBe("Cookie")
      expect(res.headers.get("x-other")).toBeNull()
      expect(res.headers.get("content-type")).toBeNull()
    }
    for (const miss of ['"nope"', `"${bare}x"`, `"a", "b"`, `"${bare}`.slice(0, -1) + '"']) {
      const res = await get("/doc", { "if-none-match": miss })
      expect(res.status, miss).toBe(200)
      expect(await res.text()).toBe(doc)
    }
  })

  // Through Middleware.test: App answers HEAD to a GET route with its catch-all 404 today (the
  // router falls back from HEAD to GET only when no route matches HEAD, and the catch-all does).
  it.effect("answers HEAD like GET", () =>
    Effect.gen(function* () {
      const inner = Effect.succeed(HttpServerResponse.text(doc))
      const run = (headers: Record<string, string>) =>
        Effect.map(
          Middleware.test(Conditional.middleware(), {
            request: new Request("http://x/doc", { method: "HEAD", headers }),
            inner
          }),
          ({ response }) => response
        )
      const head = yield* run({})
      expect(head.status).toBe(200)
      expect(head.headers.get("etag")).toBe(Conditional.etagOf(encoder.encode(doc)))
      expect((yield* run({ "if-none-match": head.headers.get("etag")! })).status).toBe(304)
    })
  )

  it("keeps an ETag the handler set, and answers streams only when they carry one", async () => {
    const own = await get("/own")
    expect(own.headers.get("etag")).toBe('"v1"')
    expect((await get("/own", { "if-none-match": '"v1"' })).status).toBe(304)
    const stream = await get("/stream", { "if-none-match": "*" })
    expect(stream.status).toBe(200)
    expect(stream.headers.get("etag")).toBeNull()
    expect(await stream.text()).toBe("ab")
    const tagged = await get("/stream-tagged", { "if-none-match": '"s1"' })
    expect(tagged.status).toBe(304)
    expect(tagged.headers.get("etag")).toBe('W/"s1"')
  })

  it("uses If-Modified-Since only without If-None-Match, and 412 for a failed If-Match", async () => {
    expect((await get("/dated", { "if-modified-since": lastModified })).status).toBe(304)
    const earlier = new Date(Date.parse(lastModified) - 1000).toUTCString()
    expect((await get("/dated", { "if-modified-since": earlier })).status).toBe(200)
    expect((await get("/dated", { "if-modified-since": "not a date" })).status).toBe(200)
    expect((await get("/dated", { "if-modified-since": lastModified, "if-none-match": '"x"' })).status).toBe(
      200
    )
    expect((await get("/doc", { "if-match": '"x"' })).status).toBe(412)
    const etag = (await get("/doc")).headers.get("etag")!
    expect((await get("/doc", { "if-match": etag })).status).toBe(200)
    // If-Match compares strongly: a weak tag never matches.
    expect((await get("/doc", { "if-match": `W/${etag}` })).status).toBe(412)
  })

  it("leaves other methods, other statuses and errors alone, and keeps cookies on a 304", async () => {
    const post = await get("/doc", { "if-none-match": "*" }, "POST")
    expect(post.status).toBe(200)
    expect(post.headers.get("etag")).toBeNull()
    const created = await get("/created", { "if-none-match": "*" })
    expect(created.status).toBe(201)
    expect(created.headers.get("etag")).toBeNull()
    const missing = await get("/missing", { "if-none-match": "*" })
    expect(missing.status).toBe(404)
    const cookie = await get("/cookie", { "if-none-match": "*" })
    expect(cookie.status).toBe(304)
    expect(cookie.headers.get("set-cookie")).toContain("seen=1")
  })

  it.effect("can make weak tags, tested alone with Middleware.test", () =>
    Effect.gen(function* () {
      const { response } = yield* Middleware.test(Conditional.middleware({ weak: true }), {
        request: new Request("http://x/"),
        inner: Effect.succeed(HttpServerResponse.text("weakly"))
      })
      expect(response.headers.get("etag")).toMatch(/^W\/"/)
    })
  )
})

describe("Conditional.parseEntityTags", () => {
  it("reads lists with commas inside quotes, weak prefixes and bare tags", () => {
    expect(Conditional.parseEntityTags(' W/"a,b", "c" ,d')).toEqual([
      { weak: true, value: "a,b" },
      { weak: false, value: "c" },
      { weak: false, value: "d" }
    ])
    expect(Conditional.parseEntityTags(" * ")).toBe("*")
    expect(Conditional.parseEntityTags("")).toEqual([])
    expect(Conditional.ifNoneMatchMatches('W/"x"', '"x"')).toBe(true)
    expect(Conditional.ifNoneMatchMatches('"x"', 'W/"x"')).toBe(true)
    expect(Conditional.ifNoneMatchMatches('"x"', undefined)).toBe(false)
    expect(Conditional.ifMatchMatches('"x"', '"x"')).toBe(true)
    expect(Conditional.ifMatchMatches('"x"', 'W/"x"')).toBe(false)
  })
})
