import { describe, expect, it } from "@effect/vitest"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as Arbitraries from "../src/Arbitraries.ts"
import * as Property from "../src/Property.ts"

interface Tree {
  readonly value: number
  readonly children: ReadonlyArray<Tree>
}
const Tree: Schema.Codec<Tree> = Schema.Struct({
  value: Schema.Int,
  children: Schema.Array(Schema.suspend((): Schema.Codec<Tree> => Tree))
})
const depthOf = (tree: Tree): number => 1 + Math.max(0, ...tree.children.map(depthOf))

type Expr =
  | { readonly _tag: "Num"; readonly n: number }
  | { readonly _tag: "Add"; readonly left: Expr; readonly right: Expr }
const Expr: Schema.Codec<Expr> = Schema.Union([
  Schema.TaggedStruct("Num", { n: Schema.Int }),
  Schema.TaggedStruct("Add", {
    left: Schema.suspend((): Schema.Codec<Expr> => Expr),
    right: Schema.suspend((): Schema.Codec<Expr> => Expr)
  })
])

class Person extends Schema.Class<Person>("Person")({
  name: Schema.NonEmptyString,
  age: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 150 }))
}) {}

const Status = { Open: "open", Closed: "closed", Archived: 3 } as const

// What request bodies, channel messages and webhook catalogs are made of.
const table: ReadonlyArray<readonly [string, Schema.Codec<any, any>]> = [
  [
    "struct with required, optional, exact-optional and nullable fields",
    Schema.Struct({
      a: Schema.String,
      b: Schema.optional(Schema.Number),
      c: Schema.optionalKey(Schema.Int),
      d: Schema.NullOr(Schema.Boolean),
      e: Schema.UndefinedOr(Schema.String)
    })
  ],
  [
    "tagged union",
    Schema.TaggedUnion({ Created: { id: Schema.String }, Deleted: { id: Schema.String, at: Schema.Int } })
  ],
  ["literals", Schema.Literals(["a", "b", 1, true])],
  ["enum", Schema.Enum(Status)],
  ["non-empty bounded string", Schema.NonEmptyString.check(Schema.isMaxLength(5))],
  ["pattern", Schema.String.check(Schema.isPattern(/^[a-z]{3,5}-\d+$/))],
  ["starts with, bounded", Schema.String.check(Schema.isStartingWith("ab"), Schema.isMaxLength(6))],
  ["trimmed", Schema.Trimmed],
  ["uppercased", Schema.String.check(Schema.isUppercased())],
  ["int between", Schema.Int.check(Schema.isBetween({ minimum: -5, maximum: 5 }))],
  ["exclusive bounds", Schema.Number.check(Schema.isGreaterThan(0), Schema.isLessThan(1))],
  ["finite", Schema.Finite],
  ["number", Schema.Number],
  ["bigint with bounds", Schema.BigInt.check(Schema.isBetweenBigInt({ minimum: -10n, maximum: 10n }))],
  ["number from string", Schema.NumberFromString],
  ["boolean", Schema.Boolean],
  [
    "array with length bounds",
    Schema.Array(Schema.String).check(Schema.isMinLength(2), Schema.isMaxLength(4))
  ],
  ["non-empty array", Schema.NonEmptyArray(Schema.Int)],
  [
    "unique array",
    Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20 }))).check(Schema.isUnique())
  ],
  ["tuple with an optional element", Schema.Tuple([Schema.String, Schema.optionalKey(Schema.Number)])],
  ["tuple with rest", Schema.TupleWithRest(Schema.Tuple([Schema.String]), [Schema.Number, Schema.Boolean])],
  ["record", Schema.Record(Schema.String, Schema.Int)],
  ["record with checked keys", Schema.Record(Schema.String.check(Schema.isMinLength(2)), Schema.Boolean)],
  ["record with template keys", Schema.Record(Schema.TemplateLiteral(["x-", Schema.String]), Schema.String)],
  ["record of literal keys", Schema.Record(Schema.Literals(["a", "b"]), Schema.Number)],
  [
    "struct with rest",
    Schema.StructWithRest(Schema.Struct({ id: Schema.String }), [Schema.Record(Schema.String, Schema.String)])
  ],
  ["brand", Schema.String.pipe(Schema.brand("UserId"))],
  ["template literal", Schema.TemplateLiteral(["user-", Schema.Int, "-", Schema.Literals(["a", "b"])])],
  ["class", Person],
  ["option", Schema.Option(Schema.String)],
  ["date", Schema.Date],
  ["date-time from string", Schema.DateTimeUtcFromString],
  ["url", Schema.URL],
  ["readonly map", Schema.ReadonlyMap(Schema.String, Schema.Int)],
  ["readonly set", Schema.ReadonlySet(Schema.Int)],
  ["recursive tree", Tree],
  ["recursive union", Expr],
  [
    "webhook catalog",
    Schema.Union([
      Schema.Struct({
        type: Schema.Literal("invoice.paid"),
        data: Schema.Struct({ invoice: Schema.String, amount: Schema.Int.check(Schema.isGreaterThan(0)) })
      }),
      Schema.Struct({
        type: Schema.Literal("customer.created"),
        data: Schema.Struct({
          id: Schema.String,
          email: Schema.optionalKey(Schema.String),
          tags: Schema.Array(Schema.String).check(Schema.isMaxLength(3))
        })
      })
    ])
  ],
  [
    "channel message",
    Schema.TaggedUnion({
      Join: { room: Schema.TemplateLiteral(["room:", Schema.String]) },
      Say: {
        room: Schema.String,
        text: Schema.String.check(Schema.isMaxLength(280)),
        at: Schema.DateTimeUtcFromString
      }
    })
  ]
]

describe("Arbitraries", () => {
  describe("every generated value belongs to its Schema", () => {
    for (const [name, schema] of table) {
      it(name, () => {
        const is = Schema.is(schema)
        const decode = Schema.decodeUnknownExit(schema)
        Property.sync([Arbitraries.arbitrary(schema)], ([value]) => is(value), { numRuns: 150 })
        Property.sync(
          [Arbitraries.arbitraryEncoded(schema)],
          ([encoded]) => {
            const exit = decode(encoded)
            expect(Exit.isSuccess(exit) ? "decodes" : String(exit.cause)).toBe("decodes")
          },
          { numRuns: 150 }
        )
      })
    }
  })

  describe("each constraint kind is respected", () => {
    it("string lengths count UTF-16 units, as Schema does", () => {
      const schema = Schema.String.check(Schema.isMinLength(3), Schema.isMaxLength(7))
      Property.sync([Arbitraries.arbitrary(schema)], ([s]) => s.length >= 3 && s.length <= 7)
    })

    it("non-empty strings are never empty, and strings reach outside ASCII", () => {
      const values = fc.sample(Arbitraries.arbitrary(Schema.NonEmptyString), { numRuns: 2_000, seed: 1 })
      expect(values.every((s) => s.length > 0)).toBe(true)
      expect(values.some((s) => /[^\x20-\x7e]/.test(s))).toBe(true)
    })

    it("code point bounds", () => {
      const schema = Schema.String.check(Schema.isMaxCodePoints(3))
      Property.sync([Arbitraries.arbitrary(schema)], ([s]) => [...s].length <= 3)
    })

    it("patterns, through fast-check's stringMatching", () => {
      const pattern = /^[A-Z]{2}-\d{4}$/
      Property.sync([Arbitraries.arbitrary(Schema.String.check(Schema.isPattern(pattern)))], ([s]) =>
        pattern.test(s)
      )
    })

    it("integers within inclusive and exclusive bounds", () => {
      const schema = Schema.Int.check(Schema.isGreaterThan(-3), Schema.isLessThanOrEqualTo(3))
      const values = fc.sample(Arbitraries.arbitrary(schema), { numRuns: 500, seed: 2 })
      expect(values.every((n) => Number.isInteger(n) && n > -3 && n <= 3)).toBe(true)
      expect(new Set(values)).toEqual(new Set([-2, -1, 0, 1, 2, 3]))
    })

    it("integers beyond 32 bits", () => {
      const schema = Schema.Int.check(Schema.isBetween({ minimum: 2 ** 40, maximum: 2 ** 41 }))
      Property.sync(
        [Arbitraries.arbitrary(schema)],
        ([n]) => Number.isSafeInteger(n) && n >= 2 ** 40 && n <= 2 ** 41
      )
    })

    it("exclusive number bounds never produce the bound", () => {
      const schema = Schema.Number.check(
        Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMinimum: true, exclusiveMaximum: true })
      )
      Property.sync([Arbitraries.arbitrary(schema)], ([n]) => n > 0 && n < 1)
    })

    it("finite numbers are finite; plain numbers include NaN and the infinities", () => {
      Property.sync([Arbitraries.arbitrary(Schema.Finite)], ([n]) => Number.isFinite(n))
      const plain = fc.sample(Arbitraries.arbitrary(Schema.Number), { numRuns: 3_000, seed: 3 })
      expect(plain.some(Number.isNaN)).toBe(true)
      expect(plain.some((n) => n === Infinity || n === -Infinity)).toBe(true)
    })

    it("array length bounds and uniqueness", () => {
      const schema = Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 9 }))).check(
        Schema.isMinLength(3),
        Schema.isMaxLength(5),
        Schema.isUnique()
      )
      Property.sync(
        [Arbitraries.arbitrary(schema)],
        ([xs]) => xs.length >= 3 && xs.length <= 5 && new Set(xs).size === xs.length
      )
    })

    it("optional keys: absent or undefined; exact-optional keys: absent, never undefined", () => {
      const schema = Schema.Struct({
        loose: Schema.optional(Schema.String),
        exact: Schema.optionalKey(Schema.String)
      })
      const values = fc.sample(Arbitraries.arbitrary(schema), { numRuns: 1_000, seed: 4 })
      expect(values.some((v) => !("loose" in v))).toBe(true)
      expect(values.some((v) => "loose" in v && v.loose === undefined)).toBe(true)
      expect(values.some((v) => typeof v.loose === "string")).toBe(true)
      expect(values.some((v) => !("exact" in v))).toBe(true)
      expect(values.some((v) => typeof v.exact === "string")).toBe(true)
      expect(values.some((v) => "exact" in v && v.exact === undefined)).toBe(false)
    })

    it("tagged unions produce every member", () => {
      const schema = Schema.TaggedUnion({ A: {}, B: { b: Schema.Int }, C: { c: Schema.String } })
      const tags = new Set(
        fc.sample(Arbitraries.arbitrary(schema), { numRuns: 300, seed: 5 }).map((v) => v._tag)
      )
      expect(tags).toEqual(new Set(["A", "B", "C"]))
    })

    it("record keys satisfy their checks", () => {
      const schema = Schema.Record(Schema.String.check(Schema.isPattern(/^k\d+$/)), Schema.Int)
      Property.sync([Arbitraries.arbitrary(schema)], ([record]) =>
        Object.keys(record).every((k) => /^k\d+$/.test(k))
      )
    })

    it("encoded values are what a client sends", () => {
      const values = fc.sample(
        Arbitraries.arbitraryEncoded(Schema.Struct({ n: Schema.NumberFromString })),
        50
      )
      expect(values.every((v) => typeof v.n === "string")).toBe(true)
    })
  })

  describe("recursion", () => {
    it("nests at most maxDepth levels", () => {
      Property.sync([Arbitraries.arbitrary(Tree, { maxDepth: 2 })], ([tree]) => depthOf(tree) <= 3)
      const deep = fc.sample(Arbitraries.arbitrary(Tree, { maxDepth: 2 }), { numRuns: 500, seed: 6 })
      expect(deep.some((tree) => depthOf(tree) === 3)).toBe(true)
    })

    it("a recursive union ends in its base case", () => {
      const depth = (e: Expr): number => (e._tag === "Num" ? 1 : 1 + Math.max(depth(e.left), depth(e.right)))
      Property.sync([Arbitraries.arbitrary(Expr, { maxDepth: 3 })], ([e]) => depth(e) <= 4)
    })

    it("a schema that can only recurse is an error", () => {
      interface Chain {
        readonly next: Chain
      }
      const Chain: Schema.Codec<Chain> = Schema.Struct({
        next: Schema.suspend((): Schema.Codec<Chain> => Chain)
      })
      expect(() => Arbitraries.arbitrary(Chain)).toThrow(/base case/)
    })
  })

  describe("what cannot be derived", () => {
    it("a Declaration without a hint names its path and tag", () => {
      const Opaque = Schema.declare((u): u is WeakMap<object, string> => u instanceof WeakMap)
      const schema = Schema.Struct({ items: Schema.Array(Schema.Struct({ cache: Opaque })) })
      try {
        Arbitraries.arbitrary(schema)
        expect.unreachable()
      } catch (error) {
        expect(error).toBeInstanceOf(Arbitraries.ArbitraryError)
        const e = error as Arbitraries.ArbitraryError
        expect(e._tag).toBe("ArbitraryError")
        expect(e.tag).toBe("Declaration")
        expect(e.path).toEqual(["items", 0, "cache"])
        expect(e.message).toContain("items[0].cache")
      }
    })

    it("a hint makes it derivable, and the schema's checks still apply", () => {
      const Opaque = Schema.declare((u): u is WeakMap<object, string> => u instanceof WeakMap).pipe(
        Arbitraries.withArbitrary(fc.constant(new WeakMap<object, string>()))
      )
      expect(
        fc
          .sample(Arbitraries.arbitrary(Schema.Struct({ cache: Opaque })), 3)
          .every((v) => v.cache instanceof WeakMap)
      ).toBe(true)
      const even = Schema.Int.check(Schema.makeFilter((n: number) => n % 2 === 0)).pipe(
        Arbitraries.withArbitrary(fc.integer({ min: 0, max: 100 }))
      )
      Property.sync([Arbitraries.arbitrary(even)], ([n]) => n % 2 === 0 && n >= 0 && n <= 100)
    })

    it("a hint for a Declaration with type parameters gets their arbitraries", () => {
      const small = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 3 }))
      const alwaysSome = Schema.Option(small).annotate({
        [Arbitraries.HintId]: ([inner]: ReadonlyArray<fc.Arbitrary<unknown>>) => inner!.map(Option.some)
      })
      const values = fc.sample(Arbitraries.arbitrary(alwaysSome), 50)
      expect(values.every((o) => Option.isSome(o) && [1, 2, 3].includes(o.value))).toBe(true)
    })

    it("contradicting constraints are an error, not an empty generator", () => {
      expect(() =>
        Arbitraries.arbitrary(Schema.String.check(Schema.isMinLength(5), Schema.isMaxLength(2)))
      ).toThrow(/contradict/)
      expect(() =>
        Arbitraries.arbitrary(Schema.Int.check(Schema.isBetween({ minimum: 1.2, maximum: 1.8 })))
      ).toThrow(/no integer/)
    })

    it("a filter that keeps failing is an error naming it, not a hang", () => {
      const never = Schema.String.check(Schema.makeFilter(() => false, { expected: "nothing at all" }))
      const arb = Arbitraries.arbitrary(Schema.Struct({ field: never }), { maxFilterAttempts: 20 })
      expect(() => fc.sample(arb, 1)).toThrow(/field.*"nothing at all"/)
    })
  })

  it("shrinks through fast-check's combinators", () => {
    const schema = Schema.Struct({
      name: Schema.String.check(Schema.isMaxLength(50)),
      tags: Schema.Array(Schema.String),
      count: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1_000 }))
    })
    const result = fc.check(
      fc.property(Arbitraries.arbitrary(schema), (v) => !(v.count > 100 && v.tags.length > 1)),
      { seed: 5 }
    )
    expect(result.failed).toBe(true)
    expect(result.counterexample).toEqual([{ name: "", tags: ["", ""], count: 101 }])
  })
})
