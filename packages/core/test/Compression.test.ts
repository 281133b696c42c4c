import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as fs from "node:fs"
import { createServer, request as httpRequest } from "node:http"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as zlib from "node:zlib"
import * as Compression from "../src/Compression.ts"
import * as Conditional from "../src/Conditional.ts"
import * as Static from "../src/Static.ts"
import { App, Middleware, Route, Router } from "../src/index.ts"

const text = Array.from({ length: 200 }, (_, i) => `line ${i}: the quick brown fox\n`).join("")
const json = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ id: i, name: `item ${i}` })))
const binary = Uint8Array.from({ length: 4096 }, (_, i) => i % 256)
const encoder = new TextEncoder()
const chunks = Array.from({ length: 20 }, (_, i) => `chunk ${i} `.repeat(50))

const tmp = fs.realpathSync(fs.mkdtempSync(nodePath.join(os.tmpdir(), "strata-compression-")))
fs.writeFileSync(nodePath.join(tmp, "big.css"), text.repeat(5))
fs.writeFileSync(nodePath.join(tmp, "app.js"), text)
fs.writeFileSync(nodePath.join(tmp, "app.js.br"), zlib.brotliCompressSync(text))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const app = Router.make([
  Route.get("/text", HttpServerResponse.text(text)),
  Route.get("/json", HttpServerResponse.text(json, { contentType: "application/json" })),
  Route.get("/small", HttpServerResponse.text("tiny body")),
  Route.get("/png", HttpServerResponse.uint8Array(binary, { contentType: "image/png" })),
  Route.get("/zip", HttpServerResponse.uint8Array(binary, { contentType: "application/zip" })),
  Route.get("/gz", HttpServerResponse.uint8Array(binary, { contentType: "application/gzip" })),
  Route.get("/encoded", HttpServerResponse.text(text, { headers: { "content-encoding": "gzip" } })),
  Route.get("/no-transform", HttpServerResponse.text(text, { headers: { "cache-control": "no-transform" } })),
  Route.get("/no-content", HttpServerResponse.empty({ status: 204 })),
  Route.get(
    "/stream",
    HttpServerResponse.stream(Stream.fromIterable(chunks.map((c) => encoder.encode(c))), {
      contentType: "text/plain"
    })
  ),
  Static.route("/files/*", { root: tmp, precompressed: true })
]).pipe(Router.use(Compression.middleware(), Conditional.middleware()))

const decode = (encoding: string | null, body: Uint8Array): string => {
  const buffer = Buffer.from(body)
  switch (encoding) {
    case "br":
      return zlib.brotliDecompressSync(buffer).toString()
    case "gzip":
      return zlib.gunzipSync(buffer).toString()
    case null:
      return buffer.toString()
    default:
      throw new Error(`unexpected encoding ${encoding}`)
  }
}

describe("Compression in-process", () => {
  const { handler, dispose } = App.toWebHandler(app, NodeHttpServer.layerHttpServices)
  afterAll(() => dispose())
  const get = async (path: string, headers: Record<string, string> = {}, method = "GET") => {
    const res = await handler(new Request(`http://x${path}`, { method, headers }))
    return {
      res,
      body: new Uint8Array(await res.arrayBuffer()),
      encoding: res.headers.get("content-encoding")
    }
  }

  it("compresses with br or gzip, and the body decompresses to the original", async () => {
    const br = await get("/text", { "accept-encoding": "gzip, deflate, br" })
    expect(br.encoding).toBe("br")
    expect(br.body.length).toBeLessThan(text.length / 4)
    expect(decode(br.encoding, br.body)).toBe(text)
    expect(br.res.headers.get("vary")).toBe("Accept-Encoding")
    expect(br.res.headers.get("content-type")).toBe("text/plain")
    const gzip = await get("/json", { "accept-encoding": "gzip" })
    expect(gzip.encoding).toBe("gzip")
    expect(decode(gzip.encoding, gzip.body)).toBe(json)
    expect(gzip.res.headers.get("content-length")).toBe(String(gzip.body.length))
  })

  it("honours q-values: the client's ranking first, q=0 refuses, identity can win", async () => {
    const cases: ReadonlyArray<readonly [string, string | null]> = [
      ["br;q=0.5, gzip;q=0.8", "gzip"],
      ["gzip;q=0.8, br", "br"],
      ["br;q=0, gzip", "gzip"],
      ["br;q=0, gzip;q=0", null],
      ["*", "br"],
      ["*;q=0", null],
      ["br;q=0, *", "gzip"],
      ["identity", null],
      ["identity;q=1, gzip;q=0.5", null],
      ["identity;q=0.5, gzip", "gzip"],
      ["", null],
      ["deflate", null],
      ["gzip;q=2", null]
    ]
    for (const [acceptEncoding, expected] of cases) {
      const { encoding, body, res } = await get("/text", { "accept-encoding": acceptEncoding })
      expect(encoding, acceptEncoding).toBe(expected)
      expect(decode(encoding, body), acceptEncoding).toBe(text)
      expect(res.headers.get("vary")).toBe("Accept-Encoding")
    }
    const none = await get("/text")
    expect(none.encoding).toBeNull()
    expect(none.res.headers.get("vary")).toBe("Accept-Encoding")
  })

  it("leaves small bodies, compressed types, encoded bodies, no-transform, 204 and HEAD alone", async () => {
    const all = { "accept-encoding": "br, gzip" }
    const small = await get("/small", all)
    expect(small.encoding).toBeNull()
    expect(decode(null, small.body)).toBe("tiny body")
    for (const path of ["/png", "/zip", "/gz"]) {
      const res = await get(path, all)
      expect(res.encoding, path).toBeNull()
      expect(res.body, path).toEqual(binary)
    }
    const encoded = await get("/encoded", all)
    expect(encoded.encoding).toBe("gzip")
    expect(decode(null, encoded.body)).toBe(text)
    const noTransform = await get("/no-transform", all)
    expect(noTransform.encoding).toBeNull()
    expect(decode(null, noTransform.body)).toBe(text)
    expect((await get("/no-content", all)).res.status).toBe(204)
  })

  // Through Middleware.test: the app's catch-all takes HEAD to GET routes today.
  it.effect("leaves HEAD alone, and compresses the same request as GET", () =>
    Effect.gen(function* () {
      const context = yield* Layer.build(NodeHttpServer.layerHttpServices)
      const run = (method: string) =>
        Effect.map(
          Middleware.test(Compression.middleware(), {
            request: new Request("http://x/", { method, headers: { "accept-encoding": "br, gzip" } }),
            inner: Effect.succeed(HttpServerResponse.text(text)),
            context
          }),
          ({ response }) => response.headers.get("content-encoding")
        )
      expect(yield* run("HEAD")).toBeNull()
      expect(yield* run("GET")).toBe("br")
    }).pipe(Effect.scoped)
  )

  it("compresses a stream as a stream", async () => {
    const res = await get("/stream", { "accept-encoding": "br" })
    expect(res.encoding).toBe("br")
    expect(res.res.headers.get("content-length")).toBeNull()
    expect(decode(res.encoding, res.body)).toBe(chunks.join(""))
    const gz = await get("/stream", { "accept-encoding": "gzip" })
    expect(decode(gz.encoding, gz.body)).toBe(chunks.join(""))
  })

  it("weakens the ETag of what it compresses, and the weak tag still revalidates", async () => {
    const plain = await get("/text")
    const strong = plain.res.headers.get("etag")!
    expect(strong).toMatch(/^"/)
    const compressed = await get("/text", { "accept-encoding": "gzip" })
    const weak = compressed.res.headers.get("etag")!
    expect(weak).toBe(`W/${strong}`)
    const revalidated = await get("/text", { "accept-encoding": "gzip", "if-none-match": weak })
    expect(revalidated.res.status).toBe(304)
    expect(revalidated.encoding).toBeNull()
    expect(revalidated.body.length).toBe(0)
    // Small bodies are not compressed, so their tag stays strong.
    expect((await get("/small", { "accept-encoding": "gzip" })).res.headers.get("etag")).toMatch(/^"/)
  })

  it("compresses files from Static on the fly, and never a precompressed variant again", async () => {
    const css = await get("/files/big.css", { "accept-encoding": "br" })
    expect(css.encoding).toBe("br")
    expect(decode(css.encoding, css.body)).toBe(text.repeat(5))
    const js = await get("/files/app.js", { "accept-encoding": "br" })
    expect(js.encoding).toBe("br")
    expect(decode(js.encoding, js.body)).toBe(text)
    // A range is sent as the bytes asked for.
    const ranged = await get("/files/big.css", { "accept-encoding": "br", range: "bytes=0-9" })
    expect(ranged.res.status).toBe(206)
    expect(ranged.encoding).toBeNull()
    expect(decode(null, ranged.body)).toBe(text.slice(0, 10))
  })
})

describe("Compression.negotiate", () => {
  it("orders codings by q-value, then by the server's preference", () => {
    expect(Compression.negotiate("gzip, br", ["br", "gzip"])).toEqual(["br", "gzip"])
    expect(Compression.negotiate("gzip;q=1, br;q=0.9", ["br", "gzip"])).toEqual(["gzip", "br"])
    expect(Compression.negotiate("GZIP ; Q=0.5", ["br", "gzip"])).toEqual(["gzip"])
    expect(Compression.negotiate(undefined, ["br", "gzip"])).toEqual([])
    expect(Compression.negotiate("br;q=abc", ["br", "gzip"])).toEqual([])
  })

  it("knows what is worth compressing", () => {
    for (const type of [
      "text/html; charset=utf-8",
      "application/json",
      "image/svg+xml",
      "application/ld+json"
    ]) {
      expect(Compression.isCompressible(type), type).toBe(true)
    }
    for (const type of [
      "image/png",
      "image/jpeg",
      "video/mp4",
      "application/zip",
      "application/gzip",
      "font/woff2"
    ]) {
      expect(Compression.isCompressible(type), type).toBe(false)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Over a real socket: Node's platform compresses in-memory bodies, streams and file streams.
// ---------------------------------------------------------------------------------------------
const server = App.serve(app).pipe(
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const raw = (port: number, path: string, headers: Record<string, string>) =>
  new Promise<{ status: number; encoding: string | undefined; body: Buffer }>((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers, timeout: 5_000 }, (res) => {
      const parts: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => parts.push(chunk))
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          encoding: res.headers["content-encoding"],
          body: Buffer.concat(parts)
        })
      )
    })
    req.on("timeout", () => req.destroy(new Error("timed out")))
    req.on("error", reject)
    req.end()
  })

describe("Compression over a real socket", () => {
  it.live("compresses bodies, streams and files through Node's zlib", () =>
    Effect.gen(function* () {
      const address = (yield* HttpServer.HttpServer).address
      const port = "port" in address ? address.port : 0
      const r = yield* Effect.promise(async () => ({
        text: await raw(port, "/text", { "accept-encoding": "br" }),
        stream: await raw(port, "/stream", { "accept-encoding": "gzip" }),
        file: await raw(port, "/files/big.css", { "accept-encoding": "gzip" }),
        precompressed: await raw(port, "/files/app.js", { "accept-encoding": "br" }),
        png: await raw(port, "/png", { "accept-encoding": "br" })
      }))
      expect(r.text.encoding).toBe("br")
      expect(decode("br", r.text.body)).toBe(text)
      expect(r.stream.encoding).toBe("gzip")
      expect(decode("gzip", r.stream.body)).toBe(chunks.join(""))
      expect(r.file.encoding).toBe("gzip")
      expect(decode("gzip", r.file.body)).toBe(text.repeat(5))
      expect(decode("br", r.precompressed.body)).toBe(text)
      expect(r.png.encoding).toBeUndefined()
      expect(new Uint8Array(r.png.body)).toEqual(binary)
    }).pipe(Effect.provide(server))
  )
})
