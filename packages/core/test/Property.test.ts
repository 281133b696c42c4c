import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"
import * as Property from "../src/Property.ts"

class Counter extends Context.Service<Counter, Ref.Ref<number>>()("test/Counter") {}
const CounterLive = Layer.effect(Counter)(Ref.make(0))

class TooBig extends Data.TaggedError("TooBig")<{ readonly n: number }> {}

const failureOf = async (run: () => Promise<void>): Promise<string> => {
  try {
    await run()
  } catch (error) {
    return (error as Error).message
  }
  throw new Error("expected the property to fail")
}

/** A cache whose entries live `ttl` milliseconds, read through the Effect `Clock`. */
class Cache extends Context.Service<
  Cache,
  {
    readonly put: (key: string, value: number) => Effect.Effect<void>
    readonly get: (key: string) => Effect.Effect<number | undefined>
    readonly size: Effect.Effect<number>
  }
>()("test/Cache") {}

const ttl = 1_000

const makeCache = (expired: (now: number, expires: number) => boolean) =>
  Layer.effect(Cache)(
    Effect.sync(() => {
      const entries = new Map<string, { readonly value: number; readonly expires: number }>()
      return Cache.of({
        put: (key, value) =>
          Effect.map(Clock.currentTimeMillis, (now) => void entries.set(key, { value, expires: now + ttl })),
        get: (key) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            const entry = entries.get(key)
            return entry === undefined || expired(now, entry.expires) ? undefined : entry.value
          }),
        size: Effect.sync(() => entries.size)
      })
    })
  )

const CacheLive = makeCache((now, expires) => now >= expires)
// Off by one: an entry is still served at the very millisecond it expires.
const CacheBuggy = makeCache((now, expires) => now > expires)

interface Model {
  now: number
  readonly entries: Map<string, { readonly value: number; readonly expires: number }>
}

const key = fc.constantFrom("a", "b", "c")
const cacheCommands = [
  fc.tuple(key, fc.integer()).map(([k, v]) =>
    Property.command({
      name: `put(${k}, ${v})`,
      run: (model: Model) =>
        Effect.gen(function* () {
          yield* (yield* Cache).put(k, v)
          model.entries.set(k, { value: v, expires: model.now + ttl })
        })
    })
  ),
  key.map((k) =>
    Property.command({
      name: `get(${k})`,
      run: (model: Model) =>
        Effect.gen(function* () {
          const entry = model.entries.get(k)
          const expected = entry === undefined || model.now >= entry.expires ? undefined : entry.value
          const actual = yield* (yield* Cache).get(k)
          if (actual !== expected)
            return yield* Effect.fail(`get(${k}) gave ${actual}, the model says ${expected}`)
        })
    })
  ),
  fc.constantFrom(1, 10, 500, 999, 1_000).map((ms) =>
    Property.command({
      name: `tick(${ms})`,
      run: (model: Model) =>
        Effect.gen(function* () {
          yield* TestClock.adjust(ms)
          model.now += ms
        })
    })
  ),
  fc.constant(
    Property.command({
      name: "size",
      // A fresh system per case: the store holds what this case put and nothing more.
      check: (model: Model) => model.entries.size > 0,
      run: (model: Model) =>
        Effect.gen(function* () {
          const size = yield* (yield* Cache).size
          if (size !== model.entries.size)
            return yield* Effect.fail(`size ${size}, the model says ${model.entries.size}`)
        })
    })
  )
]

describe("Property.effect", () => {
  it("runs each case under its own TestClock and its own build of the layer", async () => {
    let cases = 0
    await Property.effect(
      [fc.integer({ min: 0, max: 100 })],
      ([n]) =>
        Effect.gen(function* () {
          cases++
          expect(yield* Clock.currentTimeMillis).toBe(0)
          yield* TestClock.adjust("1 hour")
          expect(yield* Clock.currentTimeMillis).toBe(3_600_000)
          const counter = yield* Counter
          expect(yield* Ref.get(counter)).toBe(0)
          yield* Ref.set(counter, n)
        }),
      { layer: CounterLive, numRuns: 30 }
    )
    expect(cases).toBe(30)
  })

  it("takes a record of arbitraries and gives a record of values", async () => {
    await Property.effect({ a: fc.integer(), b: fc.string() }, ({ a, b }) =>
      Effect.sync(() => {
        expect(typeof a).toBe("number")
        expect(typeof b).toBe("string")
      })
    )
  })

  it("reports the seed, the path, the shrunk case and the pretty-printed cause", async () => {
    const message = await failureOf(() =>
      Property.effect(
        [fc.integer({ min: 0, max: 1_000 })],
        ([n]) => (n > 10 ? new TooBig({ n }) : Effect.void),
        {
          seed: 42
        }
      )
    )
    expect(message).toMatch(/seed: 42, path: "[\d:]+"/)
    expect(message).toContain("Counterexample: [[11]]")
    expect(message).toContain("TooBig")
    expect(message).toContain('"n": 11')
  })

  it("prints a defect with its message and stack", async () => {
    const message = await failureOf(() =>
      Property.effect([fc.constant("x")], () => Effect.die(new Error("kaboom in the handler")), {
        numRuns: 1
      })
    )
    expect(message).toContain("kaboom in the handler")
    expect(message).toMatch(/at .*Property\.test\.ts/)
  })

  it("replays a failure from the printed seed and path", async () => {
    const property = (seed: number, path?: string) =>
      Property.effect(
        [fc.array(fc.integer())],
        ([xs]) => (xs.length > 2 && xs.includes(7) ? Effect.fail("found 7") : Effect.void),
        { seed, ...(path === undefined ? {} : { path }), numRuns: 2_000 }
      )
    const first = await failureOf(() => property(7))
    const [, seed, path] = /seed: (-?\d+), path: "([\d:]+)"/.exec(first)!
    const counterexample = /Counterexample: (.*)/.exec(first)![1]
    const replay = await failureOf(() => property(Number(seed), path))
    expect(replay).toContain("Property failed after 1 tests")
    expect(/Counterexample: (.*)/.exec(replay)![1]).toBe(counterexample)
  })

  it("fails a case that sleeps without anyone adjusting the clock, saying why", async () => {
    const message = await failureOf(() =>
      Property.effect([fc.constant(1)], () => Effect.sleep("1 second"), { timeout: 100, numRuns: 1 })
    )
    expect(message).toContain("did not finish within 100 ms")
    expect(message).toContain("TestClock.adjust")
  })
})

describe("Property.sync", () => {
  it("passes, and fails with the shrunk case when a predicate says false or throws", () => {
    Property.sync([fc.integer(), fc.integer()], ([a, b]) => a + b === b + a)
    expect(() => Property.sync([fc.nat()], ([n]) => n < 50, { seed: 1 })).toThrow(
      /Counterexample: \[\[50\]\]/
    )
    expect(() =>
      Property.sync([fc.string()], ([s]) => {
        expect(s.length).toBeLessThan(3)
      })
    ).toThrow(/Counterexample: \[\[".{3}"\]\]/)
  })
})

describe("Property.commands", () => {
  it("holds for a cache that matches its model, under a TestClock the commands share", async () => {
    await Property.commands({
      model: (): Model => ({ now: 0, entries: new Map() }),
      commands: cacheCommands,
      layer: CacheLive,
      numRuns: 200
    })
  })

  it("finds the off-by-one and prints the shrunk sequence of commands", async () => {
    const message = await failureOf(() =>
      Property.commands({
        model: (): Model => ({ now: 0, entries: new Map() }),
        commands: cacheCommands,
        layer: CacheBuggy,
        numRuns: 500,
        seed: 3
      })
    )
    // fast-check shrinks a sequence by dropping commands: ticks adding up to the TTL remain.
    expect(message).toMatch(/Counterexample: \[put\((\w), 0\),(tick\(\d+\),)+get\(\1\)/)
    expect(message).toContain("replayPath")
    expect(message).toMatch(/Command get\(\w\) failed/)
    expect(message).toMatch(/the model says undefined/)
  })
})
