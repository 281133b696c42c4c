/**
 * Type tests of request bodies: each rule has a case that must compile and one that must not
 * (`@ts-expect-error`). Run by `tsc -p tsconfig.typetest.json`.
 */
import { NodeServices } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Multipart from "effect/http/Multipart"
import * as Body from "../src/Body.ts"
import { App, type HttpError, Middleware, Route, Router } from "../src/index.ts"

const Order = Schema.Struct({
  customer: Schema.String,
  items: Schema.Array(Schema.Struct({ name: Schema.String, qty: Schema.Number }))
})
class CreateOrder extends Body.Json<CreateOrder>()("typetest/CreateOrder", Order) {}

const create = Route.post(
  "/orders",
  Effect.gen(function* () {
    const order = yield* CreateOrder
    const customer: string = order.customer
    const qty: number | undefined = order.items[0]?.qty
    // @ts-expect-error the decoded type is the Schema's: `customer` is a string
    const _wrong: number = order.customer
    // @ts-expect-error and there is no field the Schema does not declare
    void order.total
    return HttpServerResponse.text(`${customer} ${qty}`)
  })
)

// 1. A handler reading the body service compiles behind its middleware…
{
  App.layer(Router.group("", [create]).pipe(Router.use(Body.middleware(CreateOrder))))
  App.layer(Router.group("", [create]).pipe(Router.use(Body.middleware(CreateOrder, { limit: "16 KiB" }))))
  // @ts-expect-error …and not without it
  App.layer(Router.group("", [create]))
  // @ts-expect-error nor with an app-wide stub standing in for the middleware
  App.toWebHandler(Router.group("", [create]), Layer.succeed(CreateOrder, { customer: "x", items: [] }))
  // @ts-expect-error nor behind another body's middleware
  App.layer(Router.group("", [create]).pipe(Router.use(Body.middleware(Body.Text<Note>()("typetest/Note")))))
}
interface Note {
  readonly _: unique symbol
}

// 2. The handler-level readers give the Schema's type.
{
  const read = Body.json(Order)
  const _ok: Effect.Effect<typeof Order.Type, Body.Error, HttpServerRequest.HttpServerRequest> = read
  // @ts-expect-error not another type
  const _wrong: Effect.Effect<
    { readonly customer: number },
    Body.Error,
    HttpServerRequest.HttpServerRequest
  > = read
  const _text: Effect.Effect<string, Body.Error, HttpServerRequest.HttpServerRequest> = Body.text()
  const _bytes: Effect.Effect<Uint8Array, Body.Error, HttpServerRequest.HttpServerRequest> = Body.bytes()
  // A form Schema decodes from strings…
  const _age: Effect.Effect<{ readonly age: number }, Body.Error, HttpServerRequest.HttpServerRequest> =
    Body.form(Schema.Struct({ age: Schema.FiniteFromString }))
  // @ts-expect-error …so a field that decodes from a number is refused
  Body.form(Schema.Struct({ age: Schema.Number }))
}

// 3. RequestTimeout is an error only of readers with a deadline.
{
  const _json: Effect.Effect<typeof Order.Type, Body.Error, HttpServerRequest.HttpServerRequest> = Body.json(
    Order,
    {
      limit: 1024
    }
  )
  // @ts-expect-error with a timeout, RequestTimeout is in the error channel
  const _timed: Effect.Effect<typeof Order.Type, Body.Error, HttpServerRequest.HttpServerRequest> = Body.json(
    Order,
    {
      timeout: "5 seconds"
    }
  )
  const _plain: Middleware.Middleware<CreateOrder, never, Body.Error> = Body.middleware(CreateOrder)
  // @ts-expect-error the middleware raises RequestTimeout when it has a deadline
  const _deadline: Middleware.Middleware<CreateOrder, never, Body.Error> = Body.middleware(CreateOrder, {
    timeout: "5 seconds"
  })
  const _deadlineOk: Middleware.Middleware<CreateOrder, never, Body.Error | HttpError.RequestTimeout> =
    Body.middleware(CreateOrder, { timeout: "5 seconds" })
}

// 4. Multipart: its options, and the file system it needs from the app layer.
class UploadBody extends Body.Multipart<UploadBody>()(
  "typetest/Upload",
  Schema.Struct({ title: Schema.String, file: Multipart.SingleFileSchema })
) {}
{
  const upload = Route.post(
    "/upload",
    Effect.map(UploadBody, (u) => HttpServerResponse.text(`${u.title} ${u.file.path}`))
  )
  const router = Router.group("", [upload]).pipe(Router.use(Body.middleware(UploadBody, { maxFiles: 1 })))
  App.toWebHandler(router, NodeServices.layer)
  // @ts-expect-error the app layer must give FileSystem and Path
  App.toWebHandler(router, Layer.empty)
  // @ts-expect-error multipart options do not fit a JSON body
  Body.middleware(CreateOrder, { maxFiles: 1 })
}

// 5. A middleware reading a body must list what it raises.
{
  const listed = Middleware.make({
    name: "peek",
    raises: ["UnsupportedMediaType", "PayloadTooLarge", "BadRequest"],
    apply: (next) =>
      Effect.gen(function* () {
        yield* Body.text()
        return yield* next
      })
  })
  const _listed: Middleware.Any = listed
  const unlisted = Middleware.make({
    name: "peek",
    raises: ["BadRequest"],
    apply: (next) =>
      Effect.gen(function* () {
        yield* Body.text()
        return yield* next
      })
  })
  // @ts-expect-error raises must list UnsupportedMediaType and PayloadTooLarge
  const _unlisted: Middleware.Any = unlisted
}
