/**
 * The bare node:http server: the floor of the comparison. The stack is plain function calls in the
 * same order as elsewhere (request id, logger, cookies, bearer, handler), with the shared rules; the
 * `json-schema` payload is checked by the shared hand-written validator, and `/assets/` is a
 * `fs.stat` + `fs.createReadStream` with stat-based ETag and Last-Modified and the 304s they allow.
 * It sits out `session+jwt`.
 */
import { createReadStream, type Stats } from "node:fs"
import { stat } from "node:fs/promises"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { join } from "node:path"
import {
  announce,
  badRequestBody,
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  HOST,
  isJsonContentType,
  logRequest,
  parseCookies,
  pathOf,
  REQUEST_ID_HEADER,
  requestIdOf,
  STATIC_CACHE_CONTROL,
  staticRoot,
  TOKEN,
  unauthorizedBody,
  unsupportedMediaTypeBody,
  userBody,
  validateNewUser,
  validateOrder
} from "../shared.ts"

const sendJson = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {}
) => {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text)
  })
  res.end(text)
}

const userPath = /^\/api\/users\/([^/]+)$/

// Path parameters are percent-decoded, as the routers of the other servers do.
const decodeParam = (raw: string): string => {
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

// Request id, then the log line around the rest, then cookies and bearer auth, then the handler.
const stack = (req: IncomingMessage, res: ServerResponse, id: string) => {
  const start = performance.now()
  const requestId = requestIdOf(req.headers[REQUEST_ID_HEADER] as string | undefined)
  res.setHeader(REQUEST_ID_HEADER, requestId)
  const cookies = parseCookies(req.headers.cookie)
  if (bearerToken(req.headers.authorization) !== TOKEN) {
    sendJson(res, 401, unauthorizedBody, { "www-authenticate": CHALLENGE })
  } else {
    const principal = benchPrincipal
    void cookies["sid"]
    void principal
    sendJson(res, 200, userBody(decodeParam(id)))
  }
  logRequest({
    method: req.method ?? "GET",
    path: pathOf(req.url ?? "/"),
    status: res.statusCode,
    durationMs: performance.now() - start,
    requestId
  })
}

const echo = (req: IncomingMessage, res: ServerResponse) => {
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => {
    let body: unknown
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
    } catch {
      return sendJson(res, 400, badRequestBody("body is not valid JSON"))
    }
    const order = validateOrder(body)
    if (typeof order === "string") sendJson(res, 400, badRequestBody(order))
    else sendJson(res, 200, order)
  })
}

const createUser = (req: IncomingMessage, res: ServerResponse) => {
  if (!isJsonContentType(req.headers["content-type"])) {
    req.resume()
    return sendJson(res, 415, unsupportedMediaTypeBody)
  }
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => {
    let body: unknown
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
    } catch {
      return sendJson(res, 400, badRequestBody("body is not valid JSON"))
    }
    const user = validateNewUser(body)
    if (typeof user === "string") sendJson(res, 400, badRequestBody(user))
    else sendJson(res, 201, user)
  })
}

const root = staticRoot()
const notFound = (res: ServerResponse) => sendJson(res, 404, { error: "NotFound", message: "Not Found" })

// A weak ETag from size and mtime, as `send` (Fastify's static files) makes it.
const etagOf = (info: Stats) => `W/"${info.size.toString(16)}-${info.mtimeMs.toString(16)}"`

/** RFC 9110 §13.1.2: If-None-Match compared weakly, against a list or `*`. */
const noneMatch = (header: string, etag: string): boolean => {
  if (header.trim() === "*") return true
  const opaque = etag.replace(/^W\//, "")
  return header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === opaque)
}

/**
 * `/assets/<name>`: one plain file name directly under the root (no other slash, no leading dot, so
 * no way out of it), stat-ed for its headers, answered 304 when the client's copy is current, and
 * streamed otherwise.
 */
const asset = async (req: IncomingMessage, res: ServerResponse, raw: string) => {
  let name: string
  try {
    name = decodeURIComponent(raw)
  } catch {
    return sendJson(res, 400, badRequestBody("The path is not valid percent-encoding"))
  }
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) return notFound(res)
  const file = join(root, name)
  let info: Stats
  try {
    info = await stat(file)
  } catch {
    return notFound(res)
  }
  if (!info.isFile()) return notFound(res)
  const etag = etagOf(info)
  const lastModified = info.mtime.toUTCString()
  const headers = {
    "content-type": "application/octet-stream",
    "content-length": info.size,
    etag,
    "last-modified": lastModified,
    "cache-control": STATIC_CACHE_CONTROL,
    "accept-ranges": "bytes"
  }
  const ifNoneMatch = req.headers["if-none-match"]
  const ifModifiedSince = req.headers["if-modified-since"]
  const fresh =
    ifNoneMatch !== undefined
      ? noneMatch(ifNoneMatch, etag)
      : ifModifiedSince !== undefined && Math.floor(info.mtimeMs / 1000) * 1000 <= Date.parse(ifModifiedSince)
  if (fresh) {
    res.writeHead(304, { etag, "last-modified": lastModified, "cache-control": STATIC_CACHE_CONTROL })
    return res.end()
  }
  res.writeHead(200, headers)
  if (req.method === "HEAD") return res.end()
  const stream = createReadStream(file)
  stream.on("error", () => res.destroy())
  stream.pipe(res)
}

const server = createServer((req, res) => {
  const path = pathOf(req.url ?? "/")
  if (req.method === "GET" && path === "/hello") {
    res.writeHead(200, { "content-type": "text/plain", "content-length": 5 })
    res.end("hello")
    return
  }
  if (req.method === "POST" && path === "/echo") return echo(req, res)
  if (req.method === "POST" && path === "/users") return createUser(req, res)
  if ((req.method === "GET" || req.method === "HEAD") && path.startsWith("/assets/")) {
    void asset(req, res, path.slice("/assets/".length))
    return
  }
  const match = req.method === "GET" ? userPath.exec(path) : null
  if (match !== null) return stack(req, res, match[1]!)
  sendJson(res, 404, { error: "NotFound", message: "Not Found" })
})

server.listen(0, HOST, () => {
  const address = server.address()
  if (address !== null && typeof address === "object") announce(address.port)
})
