/**
 * Static files over a directory the test builds: traversal attempts over a real socket (raw paths,
 * as fetch would normalise them), index files and redirects, ranges, 304s, precompressed variants,
 * HEAD, dotfiles and symlinks.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as fs from "node:fs"
import { createServer, request as httpRequest } from "node:http"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as zlib from "node:zlib"
import * as Static from "../src/Static.ts"
import { App, Route, Router } from "../src/index.ts"

// ---------------------------------------------------------------------------------------------
// The directory: root/ is served; outside/ and root-evil/ sit next to it and must never leak.
// ---------------------------------------------------------------------------------------------
const tmp = fs.realpathSync(fs.mkdtempSync(nodePath.join(os.tmpdir(), "strata-static-")))
const root = nodePath.join(tmp, "root")
const SECRET = "TOP-SECRET-OUTSIDE-ROOT"
const write = (rel: string, data: string | Uint8Array) => {
  const file = nodePath.join(tmp, rel)
  fs.mkdirSync(nodePath.dirname(file), { recursive: true })
  fs.writeFileSync(file, data)
}
const appJs = `export const answer = ${"42 + ".repeat(300)}0\n`
const big = Uint8Array.from({ length: 64 * 1024 }, (_, i) => (i * 31 + 7) % 251)
write("outside/secret.txt", SECRET)
write("root-evil/secret.txt", SECRET)
write("root/hello.txt", "hello world")
write("root/app.js", appJs)
write("root/app.js.br", zlib.brotliCompressSync(appJs))
write("root/app.js.gz", zlib.gzipSync(appJs))
write("root/big.bin", big)
write("root/.env", "SECRET=dotfile")
write("root/.hidden/x.txt", "hidden dir")
write("root/sub/index.html", "<h1>sub</h1>")
write("root/sub/page.html", "<p>page</p>")
write("root/nodex/readme.txt", "no index here")
write("root/weird..name.txt", "dots inside a name are fine")
fs.symlinkSync(nodePath.join(tmp, "outside"), nodePath.join(root, "escape"))
fs.symlinkSync(nodePath.join(tmp, "outside", "secret.txt"), nodePath.join(root, "leak.txt"))
fs.symlinkSync(nodePath.join(tmp, "root-evil"), nodePath.join(root, "evil"))
fs.symlinkSync(nodePath.join(root, "hello.txt"), nodePath.join(root, "inner.txt"))
fs.symlinkSync(nodePath.join(root, ".env"), nodePath.join(root, "config"))
// A precompressed variant that is a symlink out of the root is never sent.
write("root/trap.txt", "trap ".repeat(10))
fs.symlinkSync(nodePath.join(tmp, "outside", "secret.txt"), nodePath.join(root, "trap.txt.gz"))

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const app = Router.make([
  Static.route("/assets/*", {
    root,
    cacheControl: "public, max-age=60",
    precompressed: true,
    dotfiles: "deny"
  }),
  Router.group("/ignore", [Static.route("*", { root, dotfiles: "ignore" })]),
  Router.group("/allow", [
    Static.route("*", { root, dotfiles: "allow", index: ["page.html", "index.html"] })
  ]),
  Static.route("/immutable/*", { root, immutable: true }),
  Route.get("/health", HttpServerResponse.text("ok"))
])

// ---------------------------------------------------------------------------------------------
// In-process: paths fetch does not rewrite.
// ---------------------------------------------------------------------------------------------
describe("Static in-process", () => {
  const { handler, dispose } = App.toWebHandler(app, NodeHttpServer.layerHttpServices)
  afterAll(() => dispose())
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    handler(new Request(`http://x${path}`, { headers, method }))

  it("serves a file with type, length, validators and cache-control", async () => {
    const res = await get("/assets/hello.txt")
    expect(res.status).toBe(200)
    expect(await res.text()).toBe("hello world")
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8")
    expect(res.headers.get("content-length")).toBe("11")
    expect(res.headers.get("etag")).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/)
    expect(res.headers.get("last-modified")).toBe(
      fs.statSync(nodePath.join(root, "hello.txt")).mtime.toUTCString()
    )
    expect(res.headers.get("cache-control")).toBe("public, max-age=60")
    expect(res.headers.get("accept-ranges")).toBe("bytes")
    expect(res.headers.get("vary")).toBeNull()
    expect(await (await get("/assets/weird..name.txt")).text()).toBe("dots inside a name are fine")
  })

  it("marks fingerprinted files immutable", async () => {
    const res = await get("/immutable/hello.txt")
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
  })

  it("answers 304 to If-None-Match (strong, weak, lists, *) and If-Modified-Since", async () => {
    const first = await get("/assets/hello.txt")
    const etag = first.headers.get("etag")!
    const lastModified = first.headers.get("last-modified")!
    for (const ifNoneMatch of [etag, `W/${etag}`, `"nope", ${etag}`, "*"]) {
      const res = await get("/assets/hello.txt", { "if-none-match": ifNoneMatch })
      expect(res.status, ifNoneMatch).toBe(304)
      expect(await res.text()).toBe("")
      expect(res.headers.get("etag")).toBe(etag)
      expect(res.headers.get("cache-control")).toBe("public, max-age=60")
    }
    expect((await get("/assets/hello.txt", { "if-modified-since": lastModified })).status).toBe(304)
    const later = new Date(Date.parse(lastModified) + 60_000).toUTCString()
    expect((await get("/assets/hello.txt", { "if-modified-since": later })).status).toBe(304)
    const earlier = new Date(Date.parse(lastModified) - 60_000).toUTCString()
    expect((await get("/assets/hello.txt", { "if-modified-since": earlier })).status).toBe(200)
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    const both = await get("/assets/hello.txt", {
      "if-none-match": '"other"',
      "if-modified-since": lastModified
    })
    expect(both.status).toBe(200)
    expect((await get("/assets/hello.txt", { "if-match": '"other"' })).status).toBe(412)
    expect((await get("/assets/hello.txt", { "if-match": etag })).status).toBe(200)
  })

  it("serves single ranges, 416 for unsatisfiable ones and the whole file for several", async () => {
    const range = async (value: string, extra: Record<string, string> = {}) => {
      const res = await get("/assets/big.bin", { range: value, ...extra })
      return { res, body: new Uint8Array(await res.arrayBuffer()) }
    }
    const head = await range("bytes=0-99")
    expect(head.res.status).toBe(206)
    expect(head.res.headers.get("content-range")).toBe("bytes 0-99/65536")
    expect(head.res.headers.get("content-length")).toBe("100")
    expect(head.body).toEqual(big.slice(0, 100))
    const middle = await range("bytes=1000-1999")
    expect(middle.body).toEqual(big.slice(1000, 2000))
    const suffix = await range("bytes=-100")
    expect(suffix.res.headers.get("content-range")).toBe("bytes 65436-65535/65536")
    expect(suffix.body).toEqual(big.slice(-100))
    const open = await range("bytes=65000-")
    expect(open.body).toEqual(big.slice(65000))
    const clamped = await range("bytes=65500-99999")
    expect(clamped.res.headers.get("content-range")).toBe("bytes 65500-65535/65536")
    for (const unsatisfiable of ["bytes=70000-80000", "bytes=65536-", "bytes=-0", "bytes=5-1"]) {
      const res = await range(unsatisfiable)
      expect(res.res.status, unsatisfiable).toBe(416)
      expect(res.res.headers.get("content-range")).toBe("bytes */65536")
    }
    for (const whole of ["bytes=0-1,5-6", "items=0-5", "bytes=abc"]) {
      const res = await range(whole)
      expect(res.res.status, whole).toBe(200)
      expect(res.body.length).toBe(65536)
    }
    const etag = head.res.headers.get("etag")!
    expect((await range("bytes=0-9", { "if-range": etag })).res.status).toBe(206)
    expect((await range("bytes=0-9", { "if-range": '"stale"' })).res.status).toBe(200)
    expect((await range("bytes=0-9", { "if-range": `W/${etag}` })).res.status).toBe(200)
  })

  it("chooses a precompressed variant by Accept-Encoding, with Vary and the original type", async () => {
    const fetchJs = async (acceptEncoding: string | undefined) => {
      const res = await get(
        "/assets/app.js",
        acceptEncoding === undefined ? {} : { "accept-encoding": acceptEncoding }
      )
      return { res, body: Buffer.from(await res.arrayBuffer()) }
    }
    const br = await fetchJs("gzip, deflate, br")
    expect(br.res.headers.get("content-encoding")).toBe("br")
    expect(br.res.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
    expect(br.res.headers.get("vary")).toBe("Accept-Encoding")
    expect(zlib.brotliDecompressSync(br.body).toString()).toBe(appJs)
    const gz = await fetchJs("gzip")
    expect(gz.res.headers.get("content-encoding")).toBe("gzip")
    expect(zlib.gunzipSync(gz.body).toString()).toBe(appJs)
    expect((await fetchJs("br;q=0.5, gzip")).res.headers.get("content-encoding")).toBe("gzip")
    expect((await fetchJs("br;q=0, gzip;q=0")).res.headers.get("content-encoding")).toBeNull()
    for (const identity of [undefined, "identity", "identity, br;q=0.5"]) {
      const plain = await fetchJs(identity)
      expect(plain.res.headers.get("content-encoding"), identity).toBeNull()
      expect(plain.res.headers.get("vary")).toBe("Accept-Encoding")
      expect(plain.body.toString()).toBe(appJs)
    }
    // Each representation has its own validator, and revalidates on its own.
    expect(br.res.headers.get("etag")).not.toBe(gz.res.headers.get("etag"))
    const revalidated = await get("/assets/app.js", {
      "accept-encoding": "br",
      "if-none-match": br.res.headers.get("etag")!
    })
    expect(revalidated.status).toBe(304)
    expect(revalidated.headers.get("vary")).toBe("Accept-Encoding")
    // Ranges come from the uncompressed file.
    const ranged = await get("/assets/app.js", { "accept-encoding": "br", range: "bytes=0-5" })
    expect(ranged.status).toBe(206)
    expect(ranged.headers.get("content-encoding")).toBeNull()
    expect(await ranged.text()).toBe(appJs.slice(0, 6))
  })

  it("answers HEAD with the headers of GET and no body", async () => {
    const res = await get("/assets/big.bin", {}, "HEAD")
    expect(res.status).toBe(200)
    expect(res.headers.get("content-length")).toBe("65536")
    expect(res.headers.get("content-type")).toBe("application/octet-stream")
    expect(res.headers.get("etag")).toBeTruthy()
    expect(await res.text()).toBe("")
    // Registered for every method so the app's catch-all does not take HEAD; others get 405.
    const post = await get("/assets/hello.txt", {}, "POST")
    expect(post.status).toBe(405)
    expect(post.headers.get("allow")).toBe("GET, HEAD, OPTIONS")
    expect((await get("/assets/hello.txt", {}, "OPTIONS")).status).toBe(204)
    const br = await get("/assets/app.js", { "accept-encoding": "br" }, "HEAD")
    expect(br.headers.get("content-encoding")).toBe("br")
    expect(br.headers.get("content-length")).toBe(String(fs.statSync(nodePath.join(root, "app.js.br")).size))
  })

  it("redirects a directory to its slash form and serves its index", async () => {
    const bare = await get("/assets/sub?x=1")
    expect(bare.status).toBe(301)
    expect(bare.headers.get("location")).toBe("./sub/?x=1")
    expect(new URL(bare.headers.get("location")!, "http://x/assets/sub?x=1").href).toBe(
      "http://x/assets/sub/?x=1"
    )
    const index = await get("/assets/sub/")
    expect(index.status).toBe(200)
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8")
    expect(await index.text()).toBe("<h1>sub</h1>")
    // The first index file that exists wins.
    expect(await (await get("/allow/sub/")).text()).toBe("<p>page</p>")
    // No index, no listing.
    expect((await get("/assets/nodex/")).status).toBe(404)
    expect((await get("/assets/")).status).toBe(404)
    const top = await get("/assets")
    expect(top.status).toBe(301)
    expect(top.headers.get("location")).toBe("./assets/")
    // A file is not a directory.
    expect((await get("/assets/hello.txt/")).status).toBe(404)
    expect((await get("/assets/missing.txt")).status).toBe(404)
  })

  it("applies the dotfile policy, also through a symlink with an innocent name", async () => {
    expect((await get("/assets/.env")).status).toBe(403)
    expect((await get("/assets/.hidden/x.txt")).status).toBe(403)
    expect((await get("/assets/config")).status).toBe(403)
    expect((await get("/ignore/.env")).status).toBe(404)
    expect((await get("/ignore/config")).status).toBe(404)
    const allowed = await get("/allow/.env")
    expect(allowed.status).toBe(200)
    expect(await allowed.text()).toBe("SECRET=dotfile")
  })

  it("follows symlinks that stay inside the root and refuses those that leave it", async () => {
    expect(await (await get("/assets/inner.txt")).text()).toBe("hello world")
    for (const path of ["/assets/leak.txt", "/assets/escape/secret.txt", "/assets/evil/secret.txt"]) {
      const res = await get(path)
      expect(res.status, path).toBe(404)
      expect(await res.text()).not.toContain(SECRET)
    }
    // The .gz next to trap.txt links outside: the identity file is sent instead.
    const trap = await get("/assets/trap.txt", { "accept-encoding": "gzip" })
    expect(trap.headers.get("content-encoding")).toBeNull()
    expect(await trap.text()).toBe("trap ".repeat(10))
  })

  it("follows a root that is a re-pointed symlink (a release switch) and still refuses escapes", async () => {
    write("releases/one/version.txt", "one")
    write("releases/two/version.txt", "two")
    const current = nodePath.join(tmp, "current")
    fs.symlinkSync(nodePath.join(tmp, "releases", "one"), current)
    fs.symlinkSync(
      nodePath.join(tmp, "outside", "secret.txt"),
      nodePath.join(tmp, "releases", "two", "leak.txt")
    )
    const release = App.toWebHandler(
      Router.make([Static.route("/r/*", { root: current })]),
      NodeHttpServer.layerHttpServices
    )
    const fetchText = async (path: string) => {
      const res = await release.handler(new Request(`http://x${path}`))
      return [res.status, await res.text()]
    }
    try {
      expect(await fetchText("/r/version.txt")).toEqual([200, "one"])
      fs.unlinkSync(current)
      fs.symlinkSync(nodePath.join(tmp, "releases", "two"), current)
      expect(await fetchText("/r/version.txt")).toEqual([200, "two"])
      const [status, body] = await fetchText("/r/leak.txt")
      expect(status).toBe(404)
      expect(body).not.toContain(SECRET)
    } finally {
      await release.dispose()
    }
  })

  it("streams the file rather than reading it into memory", async () => {
    const response = await Effect.runPromise(
      Static.handler({ root }).pipe(
        Effect.provideService(
          HttpServerRequest.HttpServerRequest,
          HttpServerRequest.fromWeb(new Request("http://x/assets/big.bin"))
        ),
        Effect.provideService(HttpRouter.RouteContext, {
          params: {},
          route: HttpRouter.route("GET", "/assets/*", HttpServerResponse.empty())
        }),
        Effect.provide(NodeHttpServer.layerHttpServices)
      )
    )
    expect(response.status).toBe(200)
    expect(response.body._tag).toBe("Raw")
    expect(response.headers["content-length"]).toBe("65536")
  })
})

describe("Static.parseTarget", () => {
  it("decodes once and refuses dots, empty segments, backslashes and controls", () => {
    expect(Static.parseTarget("/a/b.txt", false)).toEqual({ segments: ["a", "b.txt"], trailingSlash: false })
    expect(Static.parseTarget("/a%20b/", false)).toEqual({ segments: ["a b"], trailingSlash: true })
    expect(Static.parseTarget("/%252e%252e", false)).toEqual({ segments: ["%2e%2e"], trailingSlash: false })
    for (const refused of [
      "/..",
      "/.",
      "/a/../b",
      "/%2e%2e/x",
      "/.%2E/x",
      "/..%2fx",
      "/....//x",
      "/...",
      "/..foo",
      "//etc/passwd",
      "/%2fetc%2fpasswd",
      "/a%5c..%5cb",
      "/a\\b",
      "/a%00.txt",
      "/a%0a",
      "/a%7f",
      `/${"a".repeat(256)}`
    ]) {
      expect(Static.parseTarget(refused, false), refused).toBe("refused")
    }
    expect(Static.parseTarget("/c:/windows", true)).toBe("refused")
    expect(Static.parseTarget("/c:/windows", false)).toEqual({
      segments: ["c:", "windows"],
      trailingSlash: false
    })
    expect(Static.parseTarget("/%zz", false)).toBe("malformed")
    expect(Static.parseTarget("/%c0%ae%c0%ae/x", false)).toBe("malformed")
  })

  it("finds the raw wildcard after the route's prefix", () => {
    expect(Static.wildcardOf("/static/assets/a%2fb", "/static/assets/*")).toBe("/a%2fb")
    expect(Static.wildcardOf("//static//assets/x/", "/static/assets/*")).toBe("/x/")
    expect(Static.wildcardOf("/static/assets", "/static/assets/*")).toBe("")
    expect(Static.wildcardOf("/en/assets/x", "/:lang/assets/*")).toBe("/x")
    expect(Static.wildcardOf("/x/y", "*")).toBe("/x/y")
  })
})

// ---------------------------------------------------------------------------------------------
// A real socket: raw request targets reach the server exactly as written.
// ---------------------------------------------------------------------------------------------
const server = App.serve(app).pipe(
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

interface Raw {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: Buffer
}

const raw = (port: number, path: string, headers: Record<string, string> = {}, method = "GET") =>
  new Promise<Raw>((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers, method, timeout: 5_000 }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })
      )
    })
    req.on("timeout", () => req.destroy(new Error("timed out")))
    req.on("error", reject)
    req.end()
  })

const attacks = [
  "/assets/../outside/secret.txt",
  "/assets/../../../../../../etc/passwd",
  "/assets/sub/../../outside/secret.txt",
  "/assets/..%2foutside%2fsecret.txt",
  "/assets/..%2f..%2fetc/passwd",
  "/assets/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
  "/assets/%2e%2e/outside/secret.txt",
  "/assets/%2E%2E/outside/secret.txt",
  "/assets/%2e%2e%2foutside%2fsecret.txt",
  "/assets/.%2e/outside/secret.txt",
  "/assets/%2e./outside/secret.txt",
  "/assets/....//outside/secret.txt",
  "/assets/....//....//....//etc/passwd",
  "/assets/...//outside/secret.txt",
  "/assets/..\\outside\\secret.txt",
  "/assets/..%5coutside%5csecret.txt",
  "/assets/..%5c..%5c..%5cetc%5cpasswd",
  "/assets/hello.txt%00.png",
  "/assets/%00",
  "/assets/..%00/outside/secret.txt",
  "/assets//etc/passwd",
  "/assets/%2fetc%2fpasswd",
  `/assets/${encodeURIComponent(nodePath.join(tmp, "outside", "secret.txt"))}`,
  "/assets/%252e%252e/outside/secret.txt",
  "/assets/..%252f..%252fetc/passwd",
  "/assets/escape/secret.txt",
  "/assets/leak.txt",
  "/assets/evil/secret.txt",
  "/assets/escape%2fsecret.txt",
  "/ignore/../outside/secret.txt",
  "/allow/..%2foutside/secret.txt",
  "/allow/.%2e/.%2e/etc/passwd"
]

describe("Static over a real socket", () => {
  it.live("never answers a traversal attempt with a file outside the root", () =>
    Effect.gen(function* () {
      const address = (yield* HttpServer.HttpServer).address
      const port = "port" in address ? address.port : 0
      const results = yield* Effect.promise(() =>
        Promise.all(attacks.map(async (path) => ({ path, res: await raw(port, path) })))
      )
      for (const { path, res } of results) {
        const body = res.body.toString("latin1")
        expect(body, path).not.toContain(SECRET)
        expect(body, path).not.toMatch(/root:.*:0:0:/)
        expect([400, 404], `${path} → ${res.status}`).toContain(res.status)
      }
      // Bad percent-encoding is the client's mistake; the server keeps serving afterwards.
      for (const malformed of ["/assets/%zz", "/assets/%c0%ae%c0%ae/outside/secret.txt", "/assets/%"]) {
        expect((yield* Effect.promise(() => raw(port, malformed))).status, malformed).toBe(400)
      }
      const ok = yield* Effect.promise(() => raw(port, "/assets/hello.txt"))
      expect(ok.status).toBe(200)
      expect(ok.body.toString()).toBe("hello world")
    }).pipe(Effect.provide(server))
  )

  it.live("streams a large file, ranges, precompressed variants, 304 and HEAD through Node", () =>
    Effect.gen(function* () {
      const address = (yield* HttpServer.HttpServer).address
      const port = "port" in address ? address.port : 0
      const r = yield* Effect.promise(async () => {
        const whole = await raw(port, "/assets/big.bin")
        const ranged = await raw(port, "/assets/big.bin", { range: "bytes=100-199" })
        const br = await raw(port, "/assets/app.js", { "accept-encoding": "gzip, br" })
        const head = await raw(port, "/assets/big.bin", {}, "HEAD")
        const notModified = await raw(port, "/assets/big.bin", {
          "if-none-match": String(whole.headers["etag"])
        })
        const redirect = await raw(port, "/assets/sub")
        const index = await raw(port, "/assets/sub/")
        const dotfile = await raw(port, "/assets/.env")
        return { whole, ranged, br, head, notModified, redirect, index, dotfile }
      })
      expect(r.whole.status).toBe(200)
      expect(new Uint8Array(r.whole.body)).toEqual(big)
      expect(r.ranged.status).toBe(206)
      expect(r.ranged.headers["content-range"]).toBe("bytes 100-199/65536")
      expect(new Uint8Array(r.ranged.body)).toEqual(big.slice(100, 200))
      expect(r.br.headers["content-encoding"]).toBe("br")
      expect(r.br.headers["vary"]).toBe("Accept-Encoding")
      expect(zlib.brotliDecompressSync(r.br.body).toString()).toBe(appJs)
      expect(r.head.status).toBe(200)
      expect(r.head.headers["content-length"]).toBe("65536")
      expect(r.head.body.length).toBe(0)
      expect(r.notModified.status).toBe(304)
      expect(r.notModified.body.length).toBe(0)
      expect(r.redirect.status).toBe(301)
      expect(r.redirect.headers["location"]).toBe("./sub/")
      expect(r.index.body.toString()).toBe("<h1>sub</h1>")
      expect(r.dotfile.status).toBe(403)
    }).pipe(Effect.provide(server))
  )
})
