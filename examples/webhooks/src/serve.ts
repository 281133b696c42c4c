/**
 * Starting each app on a Node HTTP server in the current scope (closing the scope stops it), for
 * `main.ts` and for the tests, which stop and restart the receiver.
 */
import { NodeHttpServer } from "@effect/platform-node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as HttpServer from "effect/http/HttpServer"
import { createServer } from "node:http"
import { App } from "@strata/core"
import type { Signature } from "@strata/webhooks"
import * as Receiver from "./receiver.ts"
import * as Sender from "./sender.ts"

/** Where to listen. Port 0 picks a free one. */
export interface Listen {
  readonly port: number
  readonly host: string
}

const urlOf = (context: Context.Context<HttpServer.HttpServer>) =>
  HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)

/**
 * Starts the sender's services (store, orders, dispatcher) and its HTTP server; returns its URL and
 * the services, to register endpoints with or inspect.
 */
export const startSender = <E>(
  options: Listen & {
    readonly services: Layer.Layer<Sender.Services, E>
    readonly csrfKey: Redacted.Redacted<string>
  }
): Effect.Effect<
  { readonly url: string; readonly context: Context.Context<Sender.Services> },
  unknown,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const context = yield* Layer.build(options.services)
    const server = yield* Layer.build(
      App.serve(Sender.makeApp(options.csrfKey)).pipe(
        Layer.provide(Layer.succeedContext(context)),
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port, host: options.host }))
      )
    )
    return { url: urlOf(server), context }
  })

/** Starts the receiver, verifying with `secret`, recording into the SQLite file `inbox`. */
export const startReceiver = (
  options: Listen & {
    readonly secret: Signature.Secret
    readonly inbox: string
    readonly redisUrl?: string | undefined
  }
): Effect.Effect<{ readonly url: string }, unknown, Scope.Scope> =>
  Effect.map(
    Layer.build(
      App.serve(Receiver.makeApp(options.secret)).pipe(
        Layer.provide(
          Layer.mergeAll(Receiver.layerInbox(options.inbox), Receiver.layerReplayCache(options.redisUrl))
        ),
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port, host: options.host }))
      )
    ),
    (server) => ({ url: urlOf(server) })
  )
