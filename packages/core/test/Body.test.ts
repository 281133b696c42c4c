/**
 * Request bodies: decoding, limits (declared and streamed), media types, malformed input, Schema
 * reports, multipart files on disk, bodies read twice, deadlines; in-process and over a real socket.
 */
import { NodeHttpServer, NodeServices } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Multipart from "effect/http/Multipart"
import * as UrlParams from "effect/http/UrlParams"
import * as TestClock from "effect/testing/TestClock"
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { createServer, request as httpRequest } from "node:http"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import * as Body from "../src/Body.ts"
import { App, HttpError, Middleware, Route, Router } from "../src/index.ts"

const Item = Schema.Struct({ name: Schema.String.check(Schema.isMinLength(1)), qty: Schema.Finite })
const Order = Schema.Struct({ customer: Schema.String, items: Schema.Array(Item) })
const Signup = Schema.Struct({
  email: Schema.String,
  age: Schema.FiniteFromString,
  tags: Schema.optional(Schema.Array(Schema.String))
})
const Upload = Schema.Struct({ title: Schema.String, file: Multipart.SingleFileSchema })

class CreateOrder extends Body.Json<CreateOrder>()("test/CreateOrder", Order) {}
class Token extends Middleware.Service<Token, string>()("test/Token") {}

const echo = (value: unknown) => HttpServerResponse.jsonUnsafe(value)
const uploads = mkdtempSync(join(tmpdir(), "strata-body-test-"))
afterAll(() => rmSync(uploads, { recursive: true, force: true }))
const uploadOptions = { directory: uploads, maxFileSize: 1024, maxFiles: 2 } as const

const describeUpload = (upload: typeof Upload.Type) =>
  Effect.map(
    Effect.promise(() => readFile(upload.file.path, "utf8")),
    (content) => echo({ title: upload.title, name: upload.file.name, content, path: upload.file.path })
  )

/** Reads the form's `_csrf` field with Effect's own reader, the way a CSRF check does. */
const csrfLike = Middleware.make({
  name: "csrfLike",
  provides: [Token],
  raises: ["Forbidden"],
  apply: (next) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const params = yield* Effect.orDie(request.urlParamsBody)
      const token = UrlParams.getFirst(params, "_csrf")
      if (token._tag === "None") return yield* new HttpError.Forbidden({ reason: "no token" })
      return yield* Effect.provideService(next, Token, token.value)
    })
})

/** Reads the multipart `_csrf` field with Effect's own persisted reader. */
const csrfMultipart = Middleware.make({
  name: "csrfMultipart",
  provides: [Token],
  apply: (next) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const form = yield* Effect.orDie(request.multipart)
      return yield* Effect.provideService(next, Token, String(form["_csrf"]))
    })
})

/** Reads the body, then hands on a new request object over the same source, as TrustedProxy does. */
const peekThenModify = Middleware.make({
  name: "peekThenModify",
  raises: ["UnsupportedMediaType", "PayloadTooLarge", "BadRequest"],
  apply: (next) =>
    Effect.gen(function* () {
      yield* Body.bytes()
      const request = yield* HttpServerRequest.HttpServerRequest
      return yield* Effect.provideService(next, HttpServerRequest.HttpServerRequest, request.modify({}))
    })
})

const app = Router.make([
  Route.post("/json", Effect.map(Body.json(Order), echo)),
  Route.post("/json-small", Effect.map(Body.json(Order, { limit: 64 }), echo)),
  Route.post("/form", Effect.map(Body.form(Signup), echo)),
  Route.post(
    "/text",
    Effect.map(Body.text(), (text) => HttpServerResponse.text(text))
  ),
  Route.post(
    "/bytes",
    Effect.map(Body.bytes({ limit: "1 KiB" }), (bytes) =>
      echo({ length: bytes.byteLength, first: Array.from(bytes.slice(0, 4)) })
    )
  ),
  Route.post("/upload", Effect.flatMap(Body.multipart(Upload, uploadOptions), describeUpload)),
  Route.post(
    "/upload-files",
    Effect.map(Body.multipart(undefined, uploadOptions), (form) =>
      echo(
        Object.fromEntries(
          Object.entries(form).map(([key, value]) => [
            key,
            typeof value === "string"
              ? value
              : value.map((item) =>
                  typeof item === "string" ? item : { name: item.name, contentType: item.contentType }
                )
          ])
        )
      )
    )
  ),
  Route.post(
    "/upload-total",
    Effect.map(Body.multipart(undefined, { directory: uploads, maxTotalSize: 2048 }), (form) =>
      echo(Object.keys(form))
    )
  ),
  Route.post(
    "/upload-raw",
    Effect.map(Body.multipart(undefined, uploadOptions), (form) => echo(Object.keys(form).toSorted()))
  ),
  Router.group("/orders", [
    Route.post(
      "/",
      Effect.gen(function* () {
        const order = yield* CreateOrder
        return HttpServerResponse.jsonUnsafe(
          { customer: order.customer, count: order.items.length },
          { status: 201 }
        )
      })
    )
  ]).pipe(Router.use(Body.middleware(CreateOrder, { limit: "4 KiB" }))),
  Router.group("/csrf", [
    Route.post(
      "/form",
      Effect.gen(function* () {
        const token = yield* Token
        const form = yield* Body.form(Schema.Struct({ _csrf: Schema.String, title: Schema.String }))
        return echo({ token, title: form.title })
      })
    )
  ]).pipe(Router.use(csrfLike)),
  Router.group("/csrf-multipart", [
    Route.post(
      "/upload",
      Effect.gen(function* () {
        const token = yield* Token
        const upload = yield* Body.multipart(Upload, uploadOptions)
        const content = yield* Effect.promise(() => readFile(upload.file.path, "utf8"))
        return echo({ token, title: upload.title, content })
      })
    )
  ]).pipe(Router.use(csrfMultipart)),
  Router.group("/peek", [Route.post("/json", Effect.map(Body.json(Order), echo))]).pipe(
    Router.use(peekThenModify)
  )
])

const order = { customer: "Ada", items: [{ name: "tea", qty: 2 }] }

const post = (path: string, body: BodyInit, headers: Record<string, string> = {}) =>
  new Request(`http://test${path}`, { method: "POST", body, headers, duplex: "half" } as RequestInit)

const jsonPost = (path: string, body: unknown, type = "application/json") =>
  post(path, typeof body === "string" ? body : JSON.stringify(body), { "content-type": type })

/** A body streamed in chunks, with no Content-Length. */
const chunked = (chunks: number, size: number) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < chunks; i++) controller.enqueue(new Uint8Array(size).fill(0x20))
      controller.close()
    }
  })

const uploadForm = (content: string, extra: Record<string, string> = {}) => {
  const form = new FormData()
  form.set("title", "notes")
  for (const [key, value] of Object.entries(extra)) form.set(key, value)
  form.set("file", new Blob([content], { type: "text/plain" }), "notes.txt")
  return form
}

/**
 * A multipart request with the form serialized up front: undici's own FormData stream throws an
 * unhandled rejection when its reader is cancelled early, as a limit does.
 */
const multipartPost = async (path: string, form: FormData) => {
  const serialized = new Response(form)
  const type = serialized.headers.get("content-type")!
  return post(path, new Uint8Array(await serialized.arrayBuffer()), { "content-type": type })
}

/** Waits (briefly) for the request scope to close after the response was consumed. */
const gone = async (path: string) => {
  for (let i = 0; i < 200 && existsSync(path); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  return !existsSync(path)
}

describe("Body in-process", () => {
  const { handler, dispose } = App.toWebHandler(app, NodeServices.layer)

  it("decodes JSON, also application/*+json with a charset", async () => {
    const res = await handler(jsonPost("/json", order))
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual(order)
    const vendor = await handler(jsonPost("/json", order, "application/vnd.api+json; charset=UTF-8"))
    expect(vendor.status).toBe(200)
  })

  it("answers malformed JSON with a 400 that does not echo the input", async () => {
    const garbage = `{"customer": ${"x".repeat(50_000)}`
    const res = await handler(jsonPost("/json", garbage))
    expect(res.status).toBe(400)
    const body = await res.text()
    expect(body.length).toBeLessThan(300)
    expect(body).not.toContain("xxxxx")
    expect(JSON.parse(body)).toMatchObject({
      error: "BadRequest",
      message: expect.stringContaining("not valid JSON")
    })
    const truncated = await handler(jsonPost("/json", '{"customer": "Ada", "items": ['))
    expect(await truncated.json()).toEqual({
      error: "BadRequest",
      message: "The body is not valid JSON: it ends too early"
    })
    const empty = await handler(jsonPost("/json", ""))
    expect((await empty.json()).message).toBe("The body is empty; JSON was expected")
    const latin1 = await handler(
      post("/json", new Uint8Array([0x22, 0xe9, 0x22]), { "content-type": "application/json" })
    )
    expect(await latin1.json()).toEqual({ error: "BadRequest", message: "The body is not valid utf-8 text" })
  })

  it("answers a wrong or missing media type with 415 listing the accepted ones", async () => {
    const res = await handler(jsonPost("/json", order, "text/plain"))
    expect(res.status).toBe(415)
    expect(await res.json()).toEqual({
      error: "UnsupportedMediaType",
      message: "Unsupported Media Type",
      accepted: ["application/json", "application/*+json"]
    })
    expect((await handler(post("/json", JSON.stringify(order)))).status).toBe(415)
    expect((await handler(jsonPost("/form", "a=1"))).status).toBe(415)
    expect((await handler(post("/text", "hi", { "content-type": "application/octet-stream" }))).status).toBe(
      415
    )
    const gzipped = await handler(
      post("/json", JSON.stringify(order), { "content-type": "application/json", "content-encoding": "gzip" })
    )
    expect(gzipped.status).toBe(415)
  })

  it("refuses a body whose Content-Length is over the limit before reading it", async () => {
    let pulled = false
    const body = new ReadableStream<Uint8Array>(
      {
        pull() {
          pulled = true
        }
      },
      { highWaterMark: 0 }
    )
    const res = await handler(
      post("/json-small", body, { "content-type": "application/json", "content-length": "65" })
    )
    expect(res.status).toBe(413)
    expect(await res.json()).toEqual({ error: "PayloadTooLarge", message: "Payload Too Large", limit: 64 })
    expect(pulled).toBe(false)
  })

  it("stops reading a streamed body without Content-Length once it passes the limit", async () => {
    let sent = 0
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += 16
        controller.enqueue(new Uint8Array(16).fill(0x20))
      }
    })
    const res = await handler(post("/json-small", endless, { "content-type": "application/json" }))
    expect(res.status).toBe(413)
    expect(await res.json()).toMatchObject({ limit: 64 })
    expect(sent).toBeLessThan(1024)
    const bytes = await handler(post("/bytes", chunked(3, 512)))
    expect(bytes.status).toBe(413)
    expect(await bytes.json()).toMatchObject({ limit: 1024 })
  })

  it("reports every Schema failure with its path", async () => {
    const res = await handler(
      jsonPost("/json", { customer: 1, items: [{ name: "", qty: 1 }, { name: "b" }] })
    )
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body.error).toBe("BadRequest")
    expect(body.issues.map((i: { path: string }) => i.path).toSorted()).toEqual([
      "customer",
      "items.0.name",
      "items.1.qty"
    ])
  })

  it("decodes urlencoded forms, with repeated keys and + as space", async () => {
    const res = await handler(
      post("/form", "email=ada%40example.com&age=36&tags=a+b&tags=c", {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8"
      })
    )
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ email: "ada@example.com", age: 36, tags: ["a b", "c"] })
  })

  it("answers invalid percent-encoding and Schema failures in a form with 400", async () => {
    const type = { "content-type": "application/x-www-form-urlencoded" }
    for (const bad of ["email=a%E0%A4%A&age=1", "email=%&age=1", "email=%FF&age=1"]) {
      const res = await handler(post("/form", bad, type))
      expect(res.status).toBe(400)
      expect(await res.json()).toEqual({
        error: "BadRequest",
        message: "The form is not valid percent-encoding (field 1)"
      })
    }
    const res = await handler(post("/form", "email=a&age=old", type))
    expect(res.status).toBe(400)
    expect((await res.json()).issues.map((i: { path: string }) => i.path)).toEqual(["age"])
  })

  it("reads text with its charset, and raw bytes", async () => {
    const text = await handler(post("/text", "héllo", { "content-type": "text/plain; charset=utf-8" }))
    expect(await text.text()).toBe("héllo")
    const latin1 = await handler(
      post("/text", new Uint8Array([0x68, 0xe9]), { "content-type": "text/plain; charset=latin1" })
    )
    expect(await latin1.text()).toBe("hé")
    const unknown = await handler(post("/text", "x", { "content-type": "text/plain; charset=klingon" }))
    expect(unknown.status).toBe(415)
    const bytes = await handler(
      post("/bytes", new Uint8Array([1, 2, 3, 4, 5]), { "content-type": "image/png" })
    )
    expect(await bytes.json()).toEqual({ length: 5, first: [1, 2, 3, 4] })
    const untyped = await handler(post("/bytes", new Uint8Array([9])))
    expect(await untyped.json()).toEqual({ length: 1, first: [9] })
  })

  it("provides a typed body service through its middleware", async () => {
    const res = await handler(jsonPost("/orders", order))
    expect(res.status).toBe(201)
    expect(await res.json()).toEqual({ customer: "Ada", count: 1 })
    const bad = await handler(jsonPost("/orders", { customer: "Ada", items: [{ qty: 1 }] }))
    expect(bad.status).toBe(400)
    expect((await bad.json()).issues).toEqual([{ path: "items.0.name", message: expect.any(String) }])
    const big = await handler(jsonPost("/orders", { ...order, pad: "x".repeat(5000) }))
    expect(big.status).toBe(413)
  })

  it("lists exactly what the middleware raises", () => {
    const route = Router.manifest(app).find((r) => r.path === "/orders")!
    expect(route.provides).toEqual(["test/CreateOrder"])
    expect(route.raises).toEqual(["UnsupportedMediaType", "PayloadTooLarge", "BadRequest"])
    const withDeadline = Body.middleware(CreateOrder, { timeout: "10 seconds" })
    expect(withDeadline.entries[0]!.info.raises).toEqual([
      "UnsupportedMediaType",
      "PayloadTooLarge",
      "BadRequest",
      "RequestTimeout"
    ])
  })

  it("gives the handler a form another middleware already read with Effect's reader", async () => {
    const res = await handler(
      post("/csrf/form", "_csrf=t0k&title=hello", { "content-type": "application/x-www-form-urlencoded" })
    )
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ token: "t0k", title: "hello" })
  })

  it("gives the handler a body read before the request object was replaced", async () => {
    const res = await handler(jsonPost("/peek/json", order))
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual(order)
  })

  it("gives the handler a multipart body another middleware already persisted", async () => {
    const res = await handler(
      await multipartPost("/csrf-multipart/upload", uploadForm("hello", { _csrf: "m1" }))
    )
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ token: "m1", title: "notes", content: "hello" })
    // and holds what was persisted to this reader's limits
    const tooLarge = await handler(
      await multipartPost("/csrf-multipart/upload", uploadForm("x".repeat(2048), { _csrf: "m1" }))
    )
    expect(tooLarge.status).toBe(413)
    expect(await tooLarge.json()).toMatchObject({ limit: 1024 })
  })

  it("decodes multipart fields and files, and removes the files after the request", async () => {
    const res = await handler(await multipartPost("/upload", uploadForm("file body")))
    expect(res.status).toBe(200)
    const body = await res.json()
    expect(body).toMatchObject({ title: "notes", name: "notes.txt", content: "file body" })
    expect(dirname(dirname(body.path))).toBe(uploads)
    expect(await gone(dirname(body.path))).toBe(true)
    expect(readdirSync(uploads)).toEqual([])
  })

  it("answers a file over the per-file limit with 413 and leaves no file behind", async () => {
    const res = await handler(await multipartPost("/upload", uploadForm("x".repeat(2048))))
    expect(res.status).toBe(413)
    expect(await res.json()).toMatchObject({ error: "PayloadTooLarge", limit: 1024 })
    expect(readdirSync(uploads)).toEqual([])
  })

  it("answers too many files with 413, and a bad multipart body with 400", async () => {
    const form = uploadForm("a")
    form.append("more", new Blob(["b"]), "b.txt")
    form.append("more", new Blob(["c"]), "c.txt")
    const res = await handler(await multipartPost("/upload-raw", form))
    expect(res.status).toBe(413)
    expect(await res.json()).toMatchObject({ limit: 2 })
    expect(readdirSync(uploads)).toEqual([])
    const ok = await handler(await multipartPost("/upload-raw", uploadForm("a")))
    expect(await ok.json()).toEqual(["file", "title"])
    const noBoundary = await handler(
      post("/upload-raw", "--x\r\n", { "content-type": "multipart/form-data" })
    )
    expect(noBoundary.status).toBe(400)
    const titleOnly = new FormData()
    titleOnly.set("title", "t")
    const missingFile = await handler(await multipartPost("/upload", titleOnly))
    expect(missingFile.status).toBe(400)
    expect((await missingFile.json()).issues.map((i: { path: string }) => i.path)).toEqual(["file"])
  })

  it("holds a multipart body to its total limit, declared or streamed", async () => {
    const form = new FormData()
    form.set("a", new Blob(["x".repeat(1500)]), "a.txt")
    form.set("b", new Blob(["y".repeat(1500)]), "b.txt")
    const declared = await handler(await multipartPost("/upload-total", form))
    expect(declared.status).toBe(413)
    expect(await declared.json()).toMatchObject({ limit: 2048 })
    const serialized = new Response(form)
    const bytes = new Uint8Array(await serialized.arrayBuffer())
    const streamed = await handler(
      post(
        "/upload-total",
        new ReadableStream<Uint8Array>({
          start(controller) {
            for (let i = 0; i < bytes.length; i += 256) controller.enqueue(bytes.slice(i, i + 256))
            controller.close()
          }
        }),
        { "content-type": serialized.headers.get("content-type")! }
      )
    )
    expect(streamed.status).toBe(413)
    expect(await streamed.json()).toMatchObject({ limit: 2048 })
    expect(readdirSync(uploads)).toEqual([])
  })

  it("takes a part with a file name as a file, whatever its type", async () => {
    const form = new FormData()
    form.set("data", new Blob(['{"a":1}'], { type: "application/json" }), "data.json")
    const res = await handler(await multipartPost("/upload-files", form))
    expect(await res.json()).toEqual({ data: [{ name: "data.json", contentType: "application/json" }] })
  })

  it.effect("disposes", () => Effect.promise(() => dispose()))
})

describe("Body deadline", () => {
  it.effect("answers a body that does not arrive in time with RequestTimeout", () =>
    Effect.gen(function* () {
      const stalled = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("{"))
        }
      })
      const request = HttpServerRequest.fromWeb(post("/x", stalled, { "content-type": "application/json" }))
      const fiber = yield* Body.json(Order, { timeout: "5 seconds" }).pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, request),
        Effect.flip,
        Effect.forkChild
      )
      yield* TestClock.adjust("4 seconds")
      expect(fiber.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("RequestTimeout")
      expect(error.status).toBe(408)
    })
  )
})

// ---------------------------------------------------------------------------------------------------
// A real socket
// ---------------------------------------------------------------------------------------------------

const socketApp = Router.make([
  Route.get("/health", HttpServerResponse.text("ok")),
  Route.post("/json", Effect.map(Body.json(Order, { limit: 1024 }), echo)),
  Route.post("/json-slow", Effect.map(Body.json(Order, { timeout: "300 millis" }), echo)),
  Route.post("/upload", Effect.flatMap(Body.multipart(Upload, uploadOptions), describeUpload)),
  Route.post(
    "/upload-slow",
    Effect.map(Body.multipart(undefined, { directory: uploads, timeout: "300 millis" }), (form) =>
      echo(Object.keys(form))
    )
  )
])

const server = App.serve(socketApp).pipe(
  Layer.provide(NodeServices.layer),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const portOf = Effect.map(HttpServer.HttpServer, (s) => ("port" in s.address ? s.address.port : 0))

/** Sends raw bytes and reads one response; resolves "" if the server closes without one. */
const raw = (port: number, head: string, body: string, options: { readonly halfClose: boolean }) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1")
    let received = ""
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error("the server neither answered nor closed within 5 seconds"))
    }, 5_000)
    const finish = () => {
      clearTimeout(timer)
      socket.destroy()
      const status = /^HTTP\/1\.1 (\d{3})/.exec(received)
      resolve({
        status: status === null ? 0 : Number(status[1]),
        body: received.slice(received.indexOf("\r\n\r\n") + 4)
      })
    }
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      received += chunk
      const end = received.indexOf("\r\n\r\n")
      const length = /\r\ncontent-length: (\d+)/i.exec(received)
      if (end !== -1 && length !== null && received.length - end - 4 >= Number(length[1])) finish()
    })
    socket.on("close", finish)
    socket.on("error", () => {})
    socket.write(head + body)
    if (options.halfClose) socket.end()
  })

const chunkedPost = (port: number, path: string, chunks: number, size: number) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        headers: { "content-type": "application/json" },
        timeout: 5_000
      },
      (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => (body += chunk))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
      }
    )
    req.on("timeout", () => req.destroy(new Error("timed out")))
    req.on("error", reject)
    for (let i = 0; i < chunks; i++) req.write(" ".repeat(size))
    req.end()
  })

describe("Body over a real socket", () => {
  it.live("stops a chunked body without Content-Length at the limit, and keeps serving", () =>
    Effect.gen(function* () {
      const port = yield* portOf
      const url = `http://127.0.0.1:${port}`
      const results = yield* Effect.promise(async () => ({
        tooLarge: await chunkedPost(port, "/json", 64, 1024),
        ok: await fetch(`${url}/json`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(order)
        }).then(async (r) => [r.status, await r.json()]),
        after: await fetch(`${url}/health`).then(async (r) => [r.status, await r.text()])
      }))
      expect(results.tooLarge.status).toBe(413)
      expect(JSON.parse(results.tooLarge.body)).toEqual({
        error: "PayloadTooLarge",
        message: "Payload Too Large",
        limit: 1024
      })
      expect(results.ok).toEqual([200, order])
      expect(results.after).toEqual([200, "ok"])
    }).pipe(Effect.provide(server))
  )

  it.live("refuses a declared Content-Length over the limit without waiting for the body", () =>
    Effect.gen(function* () {
      const port = yield* portOf
      const head =
        "POST /json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
      const res = yield* Effect.promise(() => raw(port, head, "", { halfClose: false }))
      expect(res.status).toBe(413)
      const after = yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status)
      )
      expect(after).toBe(200)
    }).pipe(Effect.provide(server))
  )

  it.live(
    "answers a truncated body (Content-Length larger than sent) with 400 or a clean close, and keeps serving",
    () =>
      Effect.gen(function* () {
        const port = yield* portOf
        const head =
          "POST /json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        const res = yield* Effect.promise(() => raw(port, head, '{"customer":', { halfClose: true }))
        expect([0, 400]).toContain(res.status)
        const stalled = yield* Effect.promise(() =>
          raw(port, head.replace("/json", "/json-slow"), '{"customer":', { halfClose: false })
        )
        expect(stalled.status).toBe(408)
        const slowUpload = yield* Effect.promise(() =>
          raw(
            port,
            "POST /upload-slow HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
              "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n",
            '--b\r\nContent-Disposition: form-data; name="f"; filename="f.txt"\r\n\r\npartial',
            { halfClose: false }
          )
        )
        expect(slowUpload.status).toBe(408)
        expect(readdirSync(uploads)).toEqual([])
        const after = yield* Effect.promise(() =>
          fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status)
        )
        expect(after).toBe(200)
      }).pipe(Effect.provide(server))
  )

  it.live("streams multipart files to disk through Node's parser, within the per-file limit", () =>
    Effect.gen(function* () {
      const port = yield* portOf
      const url = `http://127.0.0.1:${port}/upload`
      const ok = yield* Effect.promise(() =>
        fetch(url, { method: "POST", body: uploadForm("over the wire") }).then(
          async (r) => [r.status, await r.json()] as const
        )
      )
      expect(ok[0]).toBe(200)
      expect(ok[1]).toMatchObject({ title: "notes", name: "notes.txt", content: "over the wire" })
      expect(yield* Effect.promise(() => gone(dirname(ok[1].path)))).toBe(true)
      const tooLarge = yield* Effect.promise(() =>
        fetch(url, { method: "POST", body: uploadForm("y".repeat(4096)) }).then(
          async (r) => [r.status, await r.json()] as const
        )
      )
      expect(tooLarge).toEqual([413, { error: "PayloadTooLarge", message: "Payload Too Large", limit: 1024 }])
      expect(readdirSync(uploads)).toEqual([])
    }).pipe(Effect.provide(server))
  )
})
