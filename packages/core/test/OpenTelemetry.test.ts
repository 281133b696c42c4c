/**
 * The documented way to export Strata's metrics and spans to OpenTelemetry, run for real: the
 * @effect/opentelemetry SDK layer with in-memory exporters.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { describe, expect, it } from "@effect/vitest"
import { MetricReader } from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Observability, Route, Router } from "../src/index.ts"

class TestReader extends MetricReader {
  protected override async onForceFlush() {}
  protected override async onShutdown() {}
}

describe("OpenTelemetry export", () => {
  it("exports the route spans and request metrics", async () => {
    const spans = new InMemorySpanExporter()
    const reader = new TestReader()
    const otel = NodeSdk.layer(() => ({
      resource: { serviceName: "strata-test" },
      spanProcessor: new SimpleSpanProcessor(spans),
      metricReader: reader
    }))
    const app = Router.make([Route.get("/items/:id", HttpServerResponse.text("ok"))]).pipe(
      Router.use(Observability.tracing(), Observability.metrics())
    )
    const { handler, dispose } = App.toWebHandler(app, otel)
    expect((await handler(new Request("http://x/items/42"))).status).toBe(200)

    const names = spans.getFinishedSpans().map((s) => s.name)
    expect(names).toContain("GET /items/:id")
    const span = spans.getFinishedSpans().find((s) => s.name === "GET /items/:id")!
    expect(span.attributes["http.route"]).toBe("/items/:id")
    expect(span.attributes["http.response.status_code"]).toBe(200)

    const { resourceMetrics } = await reader.collect()
    const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)
    const requests = metrics.find((m) => m.descriptor.name === "http.server.requests")!
    const point = requests.dataPoints.find((p) => p.attributes["http.route"] === "/items/:id")!
    expect(point.value).toBe(1)
    expect(metrics.some((m) => m.descriptor.name === "http.server.request.duration")).toBe(true)
    await dispose()
  })
})
