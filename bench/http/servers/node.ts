/**
 * The bare node:http server: the floor of the comparison. The stack is plain function calls in the
 * same order as elsewhere (request id, logger, cookies, bearer, handler), with the shared rules.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import {
  announce,
  badRequestBody,
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  HOST,
  logRequest,
  parseCookies,
  pathOf,
  REQUEST_ID_HEADER,
  requestIdOf,
  TOKEN,
  unauthorizedBody,
  userBody,
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

const server = createServer((req, res) => {
  const path = pathOf(req.url ?? "/")
  if (req.method === "GET" && path === "/hello") {
    res.writeHead(200, { "content-type": "text/plain", "content-length": 5 })
    res.end("hello")
    return
  }
  if (req.method === "POST" && path === "/echo") return echo(req, res)
  const match = req.method === "GET" ? userPath.exec(path) : null
  if (match !== null) return stack(req, res, match[1]!)
  sendJson(res, 404, { error: "NotFound", message: "Not Found" })
})

server.listen(0, HOST, () => {
  const address = server.address()
  if (address !== null && typeof address === "object") announce(address.port)
})
