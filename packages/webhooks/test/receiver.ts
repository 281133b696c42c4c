/**
 * A fake in-process webhook receiver: an `HttpClient` layer that answers each request with a
 * scripted status (after a scripted delay on the Effect clock, so TestClock drives it) and records
 * what it saw — for dispatcher properties without sockets.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientError from "effect/http/HttpClientError"
import * as HttpClientResponse from "effect/http/HttpClientResponse"

/** One request as the receiver saw it. */
export interface Received {
  readonly url: string
  readonly host: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /** When the request arrived (Effect clock, ms). */
  readonly at: number
  /** When the answer left (Effect clock, ms); `undefined` while in flight or when it never answered. */
  endedAt: number | undefined
}

/** What the receiver answers: a response after `delay` ms, `hang` (never answers), or a refused connection. */
export type Answer =
  | {
      readonly status: number
      readonly delay?: number
      readonly headers?: Record<string, string>
      readonly body?: string
    }
  | "hang"
  | "refuse"

export interface FakeReceiver {
  readonly layer: Layer.Layer<HttpClient.HttpClient>
  readonly received: Array<Received>
  /** Requests in flight right now, per host. */
  readonly inFlight: Map<string, number>
  /** The most requests ever in flight at once, per host. */
  readonly maxInFlight: Map<string, number>
}

/**
 * Makes a receiver; `answer` sees each request and how many requests for its host came before it.
 */
export const makeReceiver = (answer: (request: Received, index: number) => Answer): FakeReceiver => {
  const received: Array<Received> = []
  const perHost = new Map<string, number>()
  const inFlight = new Map<string, number>()
  const maxInFlight = new Map<string, number>()
  const client = HttpClient.make((request, url) =>
    Effect.gen(function* () {
      const at = yield* Clock.currentTimeMillis
      const body = request.body._tag === "Uint8Array" ? new TextDecoder().decode(request.body.body) : ""
      const seen: Received = {
        url: url.href,
        host: url.host,
        headers: request.headers,
        body,
        at,
        endedAt: undefined
      }
      received.push(seen)
      const index = perHost.get(url.host) ?? 0
      perHost.set(url.host, index + 1)
      const now = (inFlight.get(url.host) ?? 0) + 1
      inFlight.set(url.host, now)
      maxInFlight.set(url.host, Math.max(now, maxInFlight.get(url.host) ?? 0))
      const reply = answer(seen, index)
      return yield* Effect.gen(function* () {
        if (reply === "hang") return yield* Effect.never
        if (reply === "refuse") {
          return yield* new HttpClientError.HttpClientError({
            reason: new HttpClientError.TransportError({ request, description: "connect ECONNREFUSED" })
          })
        }
        if (reply.delay !== undefined && reply.delay > 0) yield* Effect.sleep(reply.delay)
        seen.endedAt = yield* Clock.currentTimeMillis
        const status = reply.status
        const nullBody = status === 204 || status === 205 || status === 304
        return HttpClientResponse.fromWeb(
          request,
          new Response(nullBody ? null : (reply.body ?? ""), { status, headers: reply.headers ?? {} })
        )
      }).pipe(Effect.ensuring(Effect.sync(() => inFlight.set(url.host, (inFlight.get(url.host) ?? 1) - 1))))
    })
  )
  return { layer: Layer.succeed(HttpClient.HttpClient, client), received, inFlight, maxInFlight }
}
