import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as fc from "fast-check"
import { Body, HttpError, Logger, RequestId, Route, Router } from "../src/index.ts"
import * as Property from "../src/Property.ts"
import * as Testing from "../src/Testing.ts"

const ItemInput = Schema.Struct({
  name: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(50)),
  qty: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100 })),
  tags: Schema.optionalKey(Schema.Array(Schema.String).check(Schema.isMaxLength(5)))
})
type Item = typeof ItemInput.Type & { readonly id: string }

const SearchQuery = Schema.Struct({
  q: Schema.String.check(Schema.isMinLength(1)),
  page: Schema.optionalKey(Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThan(0))),
  sort: Schema.optionalKey(Schema.Literals(["asc", "desc"]))
})

class Items extends Context.Service<
  Items,
  {
    readonly create: (input: typeof ItemInput.Type) => Effect.Effect<Item>
    readonly find: (id: string) => Effect.Effect<Item | undefined>
  }
>()("test/Items") {}

const ItemsMemory = Layer.sync(Items)(() => {
  const items = new Map<string, Item>()
  let next = 1
  return Items.of({
    create: (input) =>
      Effect.sync(() => {
        const item = { ...input, id: String(next++) }
        items.set(item.id, item)
        return item
      }),
    find: (id) => Effect.sync(() => items.get(id))
  })
})

const param = (name: string) => Effect.map(HttpRouter.params, (params) => params[name] ?? "")

const app = Router.make([
  Route.get("/health", HttpServerResponse.text("ok")),
  Route.post(
    "/items",
    Effect.gen(function* () {
      const item = yield* (yield* Items).create(yield* Body.json(ItemInput))
      return HttpServerResponse.jsonUnsafe(item, { status: 201 })
    })
  ),
  Route.get(
    "/items/:id",
    Effect.gen(function* () {
      const item = yield* (yield* Items).find(yield* param("id"))
      if (item === undefined) return yield* new HttpError.NotFound()
      return HttpServerResponse.jsonUnsafe(item)
    })
  ),
  Route.get(
    "/pairs/:left/:right",
    Effect.map(HttpRouter.params, (params) => HttpServerResponse.jsonUnsafe(params))
  ),
  Route.get(
    "/search",
    Effect.map(HttpServerRequest.schemaSearchParams(SearchQuery).pipe(HttpError.mapSchemaError), (query) =>
      HttpServerResponse.jsonUnsafe(query)
    )
  ),
  Route.post(
    "/form",
    Effect.map(
      Body.form(Schema.Struct({ a: Schema.String, b: Schema.Array(Schema.String) })),
      HttpServerResponse.jsonUnsafe
    )
  ),
  Route.post(
    "/text",
    Effect.map(Body.text(), (text) => HttpServerResponse.text(text.toUpperCase()))
  ),
  Route.get(
    "/echo",
    Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
      HttpServerResponse.jsonUnsafe({ cookies: request.cookies, headers: request.headers, url: request.url })
    )
  ),
  Route.get(
    "/files/*",
    Effect.map(HttpServerRequest.HttpServerRequest, (request) => HttpServerResponse.text(request.url))
  )
]).pipe(Router.use(RequestId.middleware(), Logger.middleware()))

describe("Testing.client", () => {
  const client = Testing.client(app, ItemsMemory, { headers: { "x-default": "yes", "x-both": "default" } })
  afterAll(() => client.dispose())

  it("sends GET and HEAD and reads the whole response", async () => {
    const health = await client.get("/health")
    expect(health.status).toBe(200)
    expect(health.text()).toBe("ok")
    expect(health.headers.get("x-request-id")).toBeTruthy()
    const head = await client.head("/health")
    expect(head.status).toBe(200)
    expect(head.bytes.length).toBe(0)
    expect((await client.get("/nowhere")).status).toBe(404)
  })

  it("posts JSON and decodes the answer, with or without a Schema", async () => {
    const created = await client.post("/items", { json: { name: "pen", qty: 3 } })
    expect(created.status).toBe(201)
    const item = created.json(Schema.Struct({ id: Schema.String, name: Schema.String, qty: Schema.Int }))
    expect(item.name).toBe("pen")
    expect(created.json<Item>().qty).toBe(3)
    expect((await client.get(`/items/${item.id}`)).json()).toEqual({ id: item.id, name: "pen", qty: 3 })
    expect(() => created.json(Schema.Struct({ id: Schema.Number }))).toThrow()
    expect((await client.post("/items", { json: { name: "", qty: 3 } })).status).toBe(400)
  })

  it("sends forms, text, queries, cookies and headers over the defaults", async () => {
    expect((await client.post("/form", { form: { a: "1", b: ["x", "y"] } })).json()).toEqual({
      a: "1",
      b: ["x", "y"]
    })
    expect((await client.post("/text", { text: "shout" })).text()).toBe("SHOUT")
    const search = await client.get("/search", { query: { q: "a b&c", page: 2, sort: "asc" } })
    expect(search.json()).toEqual({ q: "a b&c", page: 2, sort: "asc" })
    const echo = await client.get("/echo", {
      cookies: { sid: "a;b", theme: "dark" },
      headers: { "x-both": "mine" }
    })
    const seen = echo.json<{ cookies: Record<string, string>; headers: Record<string, string> }>()
    expect(seen.cookies).toEqual({ sid: "a;b", theme: "dark" })
    expect(seen.headers["x-default"]).toBe("yes")
    expect(seen.headers["x-both"]).toBe("mine")
  })

  it("sends a TestRequest or a web Request", async () => {
    const asData = await client.send({ method: "GET", path: "/health", headers: {}, kind: "valid" })
    expect(asData.text()).toBe("ok")
    expect((await client.send(new Request("http://test/health"))).status).toBe(200)
  })
})

describe("Testing.requests", () => {
  it("creates items from the body Schema, and each reads back", async () => {
    const client = Testing.client(app, ItemsMemory)
    try {
      await Property.effect([Testing.requests(app, { route: "POST /items", body: ItemInput })], ([request]) =>
        Effect.promise(async () => {
          expect(request.route).toBe("POST /items")
          expect(request.headers["content-type"]).toBe("application/json")
          const created = await client.send(request)
          expect(created.status).toBe(201)
          const item = created.json<Item>()
          expect(item).toEqual({ ...request.input, id: item.id })
          expect((await client.get(`/items/${item.id}`)).json()).toEqual(item)
        })
      )
    } finally {
      await client.dispose()
    }
  })

  it("fills path parameters, percent-encoded, and the route decodes them back", async () => {
    const client = Testing.client(app, ItemsMemory)
    try {
      await Property.effect(
        [
          Testing.requests(app, {
            route: "GET /pairs/:left/:right",
            params: { left: fc.constantFrom("a/b", "ü", "%", "?#") }
          })
        ],
        ([request]) =>
          Effect.promise(async () => {
            expect(request.params["left"]).toMatch(/^(a\/b|ü|%|\?#)$/)
            const answer = await client.send(request)
            expect(answer.status).toBe(200)
            expect(answer.json()).toEqual(request.params)
          })
      )
    } finally {
      await client.dispose()
    }
  })

  it("builds the query from its Schema", async () => {
    const client = Testing.client(app, ItemsMemory)
    try {
      await Property.effect(
        [Testing.requests(app, { route: "GET /search", query: SearchQuery })],
        ([request]) =>
          Effect.promise(async () => {
            const answer = await client.send(request)
            expect(answer.status).toBe(200)
            expect(answer.json()).toEqual(request.query)
          })
      )
    } finally {
      await client.dispose()
    }
  })

  it("covers every route when none is named, and refuses a route the app does not have", () => {
    const routes = new Set(fc.sample(Testing.requests(app), { numRuns: 500, seed: 1 }).map((r) => r.route))
    expect(routes).toEqual(new Set(Router.manifest(app).map((r) => `${r.method} ${r.path}`)))
    const files = fc.sample(Testing.requests(app, { route: "GET /files/*" }), 50)
    expect(files.every((r) => r.path.startsWith("/files/"))).toBe(true)
    expect(() => Testing.requests(app, { route: "GET /nope" as "GET /health" })).toThrow(
      /No route GET \/nope.*GET \/health/
    )
  })

  it("takes constant headers or an arbitrary of them", () => {
    const tokens = fc.constantFrom("t1", "t2").map((token) => ({ authorization: `Bearer ${token}` }))
    const samples = fc.sample(Testing.requests(app, { route: "GET /health", headers: tokens }), 100)
    expect(new Set(samples.map((r) => r.headers["authorization"]))).toEqual(
      new Set(["Bearer t1", "Bearer t2"])
    )
  })
})

describe("Testing.hostile", () => {
  const post = Testing.hostile(app, {
    route: "POST /items",
    body: ItemInput,
    headers: { authorization: "Bearer x" }
  })

  it("draws from every family for a route with a body, and each becomes a web Request", () => {
    const samples = fc.sample(post, { numRuns: 1_500, seed: 2 })
    expect(new Set(samples.map((r) => r.kind))).toEqual(new Set(Testing.hostileKinds))
    Property.sync([post], ([request]) => {
      expect(() => Testing.toRequest(request)).not.toThrow()
    })
  })

  it("keeps the base headers unless a family attacks them", () => {
    const samples = fc.sample(post, { numRuns: 500, seed: 3 })
    const kept = samples.filter((r) => r.kind !== "odd-headers")
    expect(kept.every((r) => r.headers["authorization"] === "Bearer x")).toBe(true)
  })

  it("sends methods the route does not allow, and no body families to a GET route", () => {
    const wrong = fc.sample(Testing.hostile(app, { route: "POST /items", kinds: ["wrong-method"] }), 200)
    expect(wrong.every((r) => r.method !== "POST")).toBe(true)
    const get = fc.sample(Testing.hostile(app, { route: "GET /items/:id" }), { numRuns: 1_000, seed: 4 })
    expect(get.some((r) => r.kind === "truncated-json" || r.kind === "oversized-body")).toBe(false)
    expect(
      get.filter((r) => r.kind === "wrong-method").every((r) => r.method !== "GET" && r.method !== "HEAD")
    ).toBe(true)
  })

  it("makes oversized bodies past the limit it is told", () => {
    const big = fc.sample(
      Testing.hostile(app, { route: "POST /items", kinds: ["oversized-body"], oversize: 5_000 }),
      20
    )
    expect(big.every((r) => typeof r.body === "string" && r.body.length > 5_000)).toBe(true)
  })
})

const fragile = Router.make([
  Route.post(
    "/parse",
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const text = yield* Effect.orDie(request.text)
      // Trusting the client: malformed JSON throws, a defect, a 500.
      const value = yield* Effect.sync(() => JSON.parse(text) as { readonly name?: unknown })
      return HttpServerResponse.text(String(value.name))
    })
  ),
  Route.get("/slow", Effect.never)
])

describe("Testing.neverFails", () => {
  it("holds for an app that answers every hostile request with a 4xx or less", async () => {
    await Testing.neverFails(app, ItemsMemory, Testing.hostile(app), { numRuns: 300 })
    await Testing.neverFails(
      app,
      ItemsMemory,
      Testing.requests(app, { route: "POST /items", body: ItemInput })
    )
  })

  it("finds the request that makes an app answer 5xx and prints it shrunk", async () => {
    const failure = await Testing.neverFails(
      fragile,
      Layer.empty,
      Testing.hostile(fragile, { route: "POST /parse" }),
      {
        seed: 5
      }
    ).then(
      () => undefined,
      (error: Error) => error.message
    )
    expect(failure).toBeDefined()
    expect(failure).toMatch(/seed: 5, path: "[\d:]+"/)
    // Any request without valid JSON will do: the shrunk one is printed with its family.
    expect(failure).toMatch(/Counterexample: \[POST \/parse .*\([a-z-]+\)\]/)
    expect(failure).toContain("The app answered 500")
  })

  it("fails a request that does not get an answer in time", async () => {
    const failure = await Testing.neverFails(
      fragile,
      Layer.empty,
      Testing.requests(fragile, { route: "GET /slow" }),
      {
        timeout: 100,
        numRuns: 1
      }
    ).then(
      () => undefined,
      (error: Error) => error.message
    )
    expect(failure).toContain("did not answer within 100 ms")
    expect(failure).toContain("GET /slow")
  })

  it("runs the extra check on each response", async () => {
    const failure = await Testing.neverFails(
      app,
      ItemsMemory,
      Testing.requests(app, { route: "GET /health" }),
      {
        check: (response) => {
          expect(response.headers.get("x-frame-options")).toBe("DENY")
        }
      }
    ).then(
      () => undefined,
      (error: Error) => error.message
    )
    expect(failure).toContain("expected null to be 'DENY'")
  })
})
