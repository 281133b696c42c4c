/**
 * The chat page in a real browser: Debian's chromium, driven by playwright-core, loads the page
 * from the example's server — its script and the ws client served as TypeScript with the types
 * stripped, Effect from its `dist`, under the app's CSP — and two users, each in a browser profile
 * of their own, log in through the form, meet in the lobby, and one's message appears for the
 * other; the server restarts, the pages resume the lobby and a reload shows its history again. A
 * screenshot of the second user's page goes to `.tmp/chat-screenshot.png` at the repo root.
 *
 * Without chromium the suite is skipped with a message on stderr; install it with
 * `apt-get install -y chromium`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import { type Address, startInProcess, tempDir } from "./harness.ts"

const chromiumPath = (() => {
  for (const candidate of ["/usr/bin/chromium", "/usr/bin/chromium-browser"])
    if (existsSync(candidate)) return candidate
  try {
    return execFileSync("which", ["chromium"], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
})()

if (chromiumPath === undefined) {
  process.stderr.write(
    "examples/chat browser.test.ts: skipped, chromium is not installed (install it with `apt-get install -y chromium`)\n"
  )
}

const screenshot = fileURLToPath(new URL("../../../.tmp/chat-screenshot.png", import.meta.url))

/** Every wait of the page is bounded by this. */
const timeout = 15_000

/**
 * A browser with a fresh profile in a temporary directory, closed and removed with the scope.
 * Playwright refuses `--user-data-dir` among `launch`'s arguments and takes the directory through
 * `launchPersistentContext`, which passes it to chromium; one browser per user keeps their cookies
 * apart.
 */
const browser = Effect.acquireRelease(
  Effect.promise(async () => {
    const userDataDir = mkdtempSync(join(tmpdir(), "strata-chat-chromium-"))
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath!,
      headless: true,
      timeout,
      viewport: { width: 1100, height: 640 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
    context.setDefaultTimeout(timeout)
    return { context, userDataDir }
  }),
  ({ context, userDataDir }) =>
    Effect.promise(async () => {
      await context.close().catch(() => undefined)
      rmSync(userDataDir, { recursive: true, force: true })
    })
)

/** While the server restarts, failed connection attempts are expected. */
const network = { restarting: false }

/**
 * What went wrong on a page: uncaught errors, console errors, CSP violations. Chromium logs each
 * failed connection attempt (refused, or a 503 from the draining server) as a console error; those
 * count only outside a restart.
 */
const watch = (page: Page): Array<string> => {
  const problems: Array<string> = []
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`))
  page.on("console", (message) => {
    if (message.type() !== "error") return
    const text = message.text()
    const connecting = /^(WebSocket connection to|Failed to load resource)/.test(text)
    if (!(network.restarting && connecting)) problems.push(`console: ${text}`)
  })
  return problems
}

/** Logs in through the form and waits until the chat page is connected and in the lobby. */
const logIn = (context: BrowserContext, address: Address, username: string) =>
  Effect.promise(async () => {
    const page = context.pages()[0] ?? (await context.newPage())
    const problems = watch(page)
    try {
      await page.goto(`${address.http}/`)
      await page.fill("#username", username)
      await page.fill("#password", `${username}-password`)
      await Promise.all([page.waitForURL(`${address.http}/`), page.click("button:has-text('Log in')")])
      await page.waitForSelector("#status[data-state='open']")
      await page.waitForFunction(() => document.querySelector("#room-title")?.textContent === "Lobby")
    } catch (error) {
      // A page whose script did not run says why only in its console (a CSP refusal, a 404).
      throw new Error(`${username}'s page did not get into the lobby\n${problems.join("\n")}`, {
        cause: error
      })
    }
    return { page, problems }
  })

const members = (page: Page) =>
  page.$$eval("#members li", (items) => items.map((item) => item.textContent ?? ""))

const suite = chromiumPath === undefined ? describe.skip : describe

suite("chat example in a real browser", () => {
  it.live(
    "two users log in, see each other in the lobby, and a message typed by one appears for the other",
    () =>
      Effect.gen(function* () {
        const dataDir = yield* tempDir("chat-browser-")
        const firstRun = yield* Scope.make()
        const address = yield* startInProcess({ dataDir }).pipe(Scope.provide(firstRun))
        const alice = yield* logIn((yield* browser).context, address, "alice")
        const bob = yield* logIn((yield* browser).context, address, "bob")

        // Presence: Alice's page is told Bob came in and lists him; Bob's lists them both.
        for (const { page } of [alice, bob]) {
          yield* Effect.promise(() =>
            page.waitForFunction(() => document.querySelectorAll("#members li").length === 2)
          )
          expect(yield* Effect.promise(() => members(page))).toEqual(["Alice", "Bob"])
        }

        yield* Effect.promise(async () => {
          await alice.page.fill("#text", "Hello Bob, from Alice's browser")
          await alice.page.press("#text", "Enter")
        })
        const line = '#messages li:has-text("Hello Bob, from Alice\'s browser")'
        yield* Effect.promise(() => bob.page.waitForSelector(line))
        expect(yield* Effect.promise(() => bob.page.textContent(`${line} .who`))).toBe("Alice")
        yield* Effect.promise(async () => {
          await bob.page.fill("#text", "Hi Alice!")
          await bob.page.press("#text", "Enter")
          await alice.page.waitForSelector('#messages li.mine:has-text("Hello Bob")')
          await alice.page.waitForSelector('#messages li:has-text("Hi Alice!")')
          await bob.page.waitForSelector('#messages li.mine:has-text("Hi Alice!")')
        })

        // The join authorization, as the page shows it.
        yield* Effect.promise(async () => {
          await bob.page.click("#rooms button[data-room='staff']")
          await bob.page.waitForFunction(() =>
            document.querySelector("#notice")?.textContent?.includes("Staff is for admins only")
          )
          await bob.page.click("#rooms button[data-room='lobby']")
          await bob.page.waitForSelector('#messages li:has-text("Hi Alice!")')
        })

        // The server restarts: both pages reconnect, resume the lobby, and go on.
        network.restarting = true
        yield* Scope.close(firstRun, Exit.void)
        yield* Effect.promise(() =>
          bob.page.waitForSelector("#status:not([data-state='open'])", { state: "attached" })
        )
        yield* startInProcess({ dataDir, port: address.port })
        yield* Effect.promise(async () => {
          for (const { page } of [alice, bob]) {
            await page.waitForSelector("#status[data-state='open']")
            await page.waitForFunction(() =>
              document.querySelector("#notice")?.textContent?.startsWith("Reconnected: nothing was missed")
            )
          }
          network.restarting = false
          await alice.page.fill("#text", "Still here after the restart")
          await alice.page.press("#text", "Enter")
          await bob.page.waitForSelector('#messages li:has-text("Still here after the restart")')
        })
        // A fresh page load reads the lobby's history back from the restarted server.
        const texts = yield* Effect.promise(async () => {
          await alice.page.reload()
          await alice.page.waitForSelector('#messages li:has-text("Still here after the restart")')
          return alice.page.$$eval("#messages li .text", (items) => items.map((item) => item.textContent))
        })
        expect(texts).toEqual([
          "Hello Bob, from Alice's browser",
          "Hi Alice!",
          "Still here after the restart"
        ])

        mkdirSync(join(screenshot, ".."), { recursive: true })
        yield* Effect.promise(() => bob.page.screenshot({ path: screenshot, fullPage: true }))
        process.stderr.write(`examples/chat browser.test.ts: screenshot of Bob's page at ${screenshot}\n`)

        expect(alice.problems).toEqual([])
        expect(bob.problems).toEqual([])
      }).pipe(Effect.scoped),
    90_000
  )
})
