/**
 * fast-check properties whose cases are Effects: each generated case runs as its own program under a
 * fresh `TestClock`, so time moves only when the case moves it and no case sees another's clock.
 */
import * as Effect from "effect/Effect"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"

/**
 * Runs one Effect per generated case under a fresh TestClock; the property holds when every case
 * succeeds (a failure or defect is a counterexample, reported with fast-check's seed and path).
 *
 * @example
 * ```ts
 * it("delays stay inside the jitter envelope", () =>
 *   effectProperty([fc.integer({ min: 0, max: 7 })], (attempt) => Effect.gen(function* () { ... })))
 * ```
 */
export const effectProperty = <const Ts extends ReadonlyArray<unknown>>(
  arbitraries: { readonly [K in keyof Ts]: fc.Arbitrary<Ts[K]> },
  predicate: (...values: Ts) => Effect.Effect<unknown, unknown, never>,
  parameters?: fc.Parameters<Ts>
): Promise<void> =>
  fc.assert(
    fc.asyncProperty(
      ...(arbitraries as unknown as [fc.Arbitrary<unknown>]),
      async (...values: ReadonlyArray<unknown>) => {
        await Effect.runPromise(
          predicate(...(values as unknown as Ts)).pipe(Effect.asVoid, Effect.provide(TestClock.layer()))
        )
      }
    ) as unknown as fc.IAsyncProperty<Ts>,
    parameters
  )
