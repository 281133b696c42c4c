/**
 * Type tests of the property-testing kit: each rule has a case that must compile and one that must
 * not (`@ts-expect-error`). Run by `tsc -p tsconfig.typetest.json`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as fc from "fast-check"
import * as Arbitraries from "../src/Arbitraries.ts"
import * as Property from "../src/Property.ts"
import * as Testing from "../src/Testing.ts"
import { Route, Router } from "../src/index.ts"

class Users extends Context.Service<Users, { readonly count: Effect.Effect<number> }>()("typetest/Users") {}
const UsersLive = Layer.succeed(Users, { count: Effect.succeed(2) })

const Note = Schema.Struct({ title: Schema.NonEmptyString, tags: Schema.Array(Schema.String) })

// 1. Arbitraries carry the Schema's types, both sides.
{
  const note: fc.Arbitrary<{ readonly title: string; readonly tags: ReadonlyArray<string> }> =
    Arbitraries.arbitrary(Note)
  const wire: fc.Arbitrary<string> = Arbitraries.arbitraryEncoded(Schema.NumberFromString)
  // @ts-expect-error the type side of NumberFromString is a number
  const _wrong: fc.Arbitrary<string> = Arbitraries.arbitrary(Schema.NumberFromString)
  void note
  void wire
}

// 2. A hint must generate values of the schema's type.
{
  Schema.String.pipe(Arbitraries.withArbitrary(fc.constantFrom("a", "b")))
  Arbitraries.withArbitrary(Schema.Number, fc.integer())
  // @ts-expect-error numbers for a string schema
  Schema.String.pipe(Arbitraries.withArbitrary(fc.integer()))
}

// 3. A property whose cases read a service needs a layer that provides it.
{
  const body = ([n]: [number]) =>
    Effect.gen(function* () {
      const count = yield* (yield* Users).count
      if (count > n) yield* Effect.fail("more users than expected")
    })
  void Property.effect([fc.nat()], body, { layer: UsersLive })
  void Property.effect([fc.nat()], () => Effect.void)
  // @ts-expect-error no layer provides Users
  void Property.effect([fc.nat()], body)
  // @ts-expect-error a layer that provides something else
  void Property.effect([fc.nat()], body, { layer: Layer.empty })
}

// 4. Values follow the arbitraries: a tuple gives a tuple, a record a record.
{
  void Property.effect([fc.nat(), fc.string()], ([n, s]) => Effect.sync(() => n.toFixed() + s.trim()))
  void Property.effect({ n: fc.nat() }, ({ n }) => Effect.sync(() => n.toFixed()))
  // @ts-expect-error the second value is a string
  void Property.effect([fc.nat(), fc.string()], ([, s]) => Effect.sync(() => s.toFixed()))
}

// 5. Commands that read a service need a layer for it.
{
  const count = fc.constant(
    Property.command({
      name: "count",
      run: (_model: { n: number }) => Effect.asVoid(Users)
    })
  )
  void Property.commands({ model: () => ({ n: 0 }), commands: [count], layer: UsersLive })
  // @ts-expect-error no layer provides Users
  void Property.commands({ model: () => ({ n: 0 }), commands: [count] })
}

// 6. Routes are named as the app has them.
{
  const app = Router.make([
    Route.get("/health", HttpServerResponse.text("ok")),
    Route.post("/notes", HttpServerResponse.empty({ status: 201 }))
  ])
  const requests = Testing.requests(app, { route: "POST /notes", body: Note })
  const input: fc.Arbitrary<{ readonly input: { readonly title: string } }> = requests
  Testing.hostile(app, { route: "GET /health" })
  // @ts-expect-error the app has no such route
  Testing.requests(app, { route: "GET /notes" })
  // @ts-expect-error nor this one
  Testing.hostile(app, { route: "DELETE /health" })
  void input
}

// 7. The client's services are the app's.
{
  const app = Router.make([
    Route.get(
      "/count",
      Effect.map(Users, () => HttpServerResponse.empty())
    )
  ])
  void Testing.client(app, UsersLive).get("/count")
  // @ts-expect-error the app reads Users
  void Testing.client(app, Layer.empty)
}
