/**
 * The browser side, served without a build step: the page script and the channel module of this
 * example, the typed client of `@strata/ws` and the `@strata/core` modules it imports — TypeScript
 * with the types stripped by `node:module` — and Effect from its `dist`, each as an ES module, plus
 * the import map for their bare specifiers, which the page's CSP allows by its hash.
 */
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Route, Router } from "@strata/core"
import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import { createRequire, stripTypeScriptTypes } from "node:module"
import { dirname, join, normalize, sep } from "node:path"
import { fileURLToPath } from "node:url"

const require = createRequire(import.meta.url)

interface Root {
  /** The URL prefix, e.g. `/assets/ws/`. */
  readonly prefix: string
  readonly dir: string
  /** TypeScript to strip, or JavaScript as it is. */
  readonly strip: boolean
  /** Added to a path without one (bare specifiers such as `effect/Effect` carry none). */
  readonly extension: ".ts" | ".js"
  /** When given, only these paths (relative to `dir`) are served. */
  readonly only?: ReadonlySet<string> | undefined
}

const root = (name: string, dir: string, strip: boolean, only?: ReadonlySet<string>): Root => ({
  prefix: `/assets/${name}/`,
  dir,
  strip,
  extension: strip ? ".ts" : ".js",
  only
})

const roots: ReadonlyArray<Root> = [
  // Of this example, only what the browser runs: never the server's modules.
  root("app", fileURLToPath(new URL(".", import.meta.url)), true, new Set(["Chat.ts", "browser/page.ts"])),
  root("ws", dirname(require.resolve("@strata/ws")), true),
  root("core", dirname(require.resolve("@strata/core")), true),
  root("effect", join(dirname(require.resolve("effect/package.json")), "dist"), false)
]

/** The page's module script. */
export const pageScript = "/assets/app/browser/page.ts"

/** The stylesheet. */
export const styleSheet = "/assets/chat.css"

const importMap = JSON.stringify({
  imports: {
    effect: "/assets/effect/index.js",
    "effect/": "/assets/effect/",
    "@strata/core/": "/assets/core/",
    "@strata/ws/": "/assets/ws/"
  }
})

/** The `<script type="importmap">` element every page that runs the client carries. */
export const importMapTag = `<script type="importmap">${importMap}</script>`

/** The CSP source that allows exactly this import map (an inline script, so `'self'` does not). */
export const importMapHash = `'sha256-${createHash("sha256").update(importMap).digest("base64")}'`

// The file a URL path names under a root, never outside it.
const fileOf = (r: Root, path: string): string | undefined => {
  let relative: string
  try {
    relative = decodeURIComponent(path.slice(r.prefix.length))
  } catch {
    return undefined
  }
  if (relative.includes("\0") || relative.includes("\\")) return undefined
  if (!relative.endsWith(".ts") && !relative.endsWith(".js")) relative += r.extension
  if (!relative.endsWith(r.extension)) return undefined
  const full = normalize(join(r.dir, relative))
  if (!full.startsWith(r.dir.endsWith(sep) ? r.dir : r.dir + sep)) return undefined
  if (
    r.only !== undefined &&
    !r.only.has(
      full
        .slice(r.dir.length)
        .replace(/^[/\\]/, "")
        .split(sep)
        .join("/")
    )
  )
    return undefined
  return full
}

interface Asset {
  readonly body: string
  readonly etag: string
}

// The files do not change while the server runs: each is read (and stripped) once.
const cache = new Map<string, Promise<Asset | undefined>>()

const load = (file: string, strip: boolean): Promise<Asset | undefined> => {
  let asset = cache.get(file)
  if (asset === undefined) {
    asset = readFile(file, "utf8").then(
      (source) => {
        const body = strip ? stripTypeScriptTypes(source, { mode: "strip" }) : source
        return { body, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` }
      },
      () => undefined
    )
    cache.set(file, asset)
  }
  return asset
}

const notFound = HttpServerResponse.text("Not Found", { status: 404 })

const serveModule = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const path = new URL(request.url, "http://x").pathname
  const r = roots.find((candidate) => path.startsWith(candidate.prefix))
  const file = r === undefined ? undefined : fileOf(r, path)
  if (r === undefined || file === undefined) return notFound
  const asset = yield* Effect.promise(() => load(file, r.strip))
  if (asset === undefined) return notFound
  const headers = { etag: asset.etag, "cache-control": "no-cache" }
  if (request.headers["if-none-match"] === asset.etag)
    return HttpServerResponse.empty({ status: 304, headers })
  return HttpServerResponse.text(asset.body, { contentType: "text/javascript; charset=utf-8", headers })
})

const css = fileURLToPath(new URL("./browser/chat.css", import.meta.url))

const serveStyle = Effect.gen(function* () {
  const asset = yield* Effect.promise(() => load(css, false))
  if (asset === undefined) return notFound
  return HttpServerResponse.text(asset.body, {
    contentType: "text/css; charset=utf-8",
    headers: { etag: asset.etag, "cache-control": "no-cache" }
  })
})

/** The routes of the browser's modules and the stylesheet; public, like any static file. */
export const routes = Router.make([
  Route.get(styleSheet, serveStyle),
  ...roots.map((r) => Route.get(`${r.prefix}*` as `/assets/${string}/*`, serveModule))
])
