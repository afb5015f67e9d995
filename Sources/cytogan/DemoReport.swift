import CytoCore
import CytoGAN
import Foundation
import Profiling

/// Writes the demo's report folder: index.html (scores, confusion matrix, loss curves, pictures,
/// timings) and scores.json (every number in the page, for scripts).
struct DemoReport {
    let results: [DemoResult]
    let pictures: DemoPictures.Drawn
    let curve: [(step: Int, d: Float, g: Float)]
    let summary: Trainer.Summary
    let config: GANConfig
    let crops: Int
    let synth: SynthConfig
    let timings: [(String, Double)]
    let totalSeconds: Double
    /// How real the generated cells look against the screen's own crops.
    let realism: RealismReport

    func percent(_ v: Double?) -> String { v.map { String(format: "%.1f%%", $0 * 100) } ?? "n/a" }

    var consoleSummary: String {
        var s = "demo: MOA scores (NSC / NSCB / per-compound / mAP)\n"
        for r in results {
            let m = r.report.score
            s += "  \(r.name.padding(toLength: 34, withPad: " ", startingAt: 0)) \(percent(m.nsc)) / \(percent(m.nscb)) / \(percent(m.perCompound)) / \(m.map.map { String(format: "%.3f", $0) } ?? "n/a")\n"
        }
        s += realismSummary + "\n"
        s += String(format: "demo: %d training steps, %.0f images/s; total %.0f s", summary.finalStep, summary.imagesPerSecond, totalSeconds)
        return s
    }

    /// One line: the CNN's accuracy against its null and the Frechet ratio.
    var realismSummary: String {
        String(format: "demo: realism of %d generated cells: CNN two-sample accuracy %.3f (real vs real %.3f), measurement Frechet distance %@ times the real-vs-real floor",
               realism.count, realism.accuracy, realism.nullAccuracy, realism.ratio.map { String(format: "%.1f", $0) } ?? "n/a")
    }

    func write(to out: String) throws {
        var scores: [JSON] = []
        for r in results {
            scores.append(["features": .string(r.name), "feature_count": JSON(r.features), "moa": r.report.json, "crops": r.crops.json])
        }
        let json: JSON = [
            "scores": .array(scores),
            "training": ["preset": .string(config.name), "loss": .string(config.loss.rawValue), "steps": JSON(summary.finalStep),
                         "images_per_s": .double(summary.imagesPerSecond), "seconds": .double(summary.elapsedSeconds)],
            "crops": JSON(crops),
            "realism": realism.json(),
            "timings": .object(Dictionary(uniqueKeysWithValues: timings.map { ($0.0, JSON.double($0.1)) })),
        ]
        try AtomicFile.write(Array((json.serialized + "\n").utf8), to: "\(out)/scores.json")
        try AtomicFile.write(Array(html.utf8), to: "\(out)/index.html")
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    var html: String {
        var h = """
        <!doctype html><html><head><meta charset="utf-8"><title>cytogan demo report</title>
        <style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
        table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f4f4f4}
        td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}img{image-rendering:pixelated;max-width:100%}
        figcaption{color:#555;font-size:90%}</style></head><body>
        <h1>cytogan demo</h1>
        <p>A synthetic screen of \(crops) single-cell crops (\(synth.moaCount) mechanisms of action, \(synth.moaCount * synth.compoundsPerMOA) compounds at \(synth.concentrations.count) concentrations, DMSO controls, \(synth.batches * synth.platesPerBatch) plates in \(synth.batches) batches), a \(escape(config.name)) \(config.loss.rawValue.uppercased()) trained for \(summary.finalStep) steps (\(String(format: "%.0f", summary.elapsedSeconds)) s, \(String(format: "%.0f", summary.imagesPerSecond)) images/s), and profiles scored by how well the nearest other-compound treatment finds each treatment's mechanism. Per-cell features are averaged per well, standardized to each plate's DMSO wells, and averaged per treatment; distances are cosine.</p>
        <h2>Mechanism-of-action scores</h2>
        <table><tr><th>features</th><th>count</th><th>NSC</th><th>NSCB</th><th>per-compound</th><th>mAP</th><th>single cells, treated vs DMSO (balanced acc.)</th></tr>

        """
        for r in results {
            let m = r.report.score
            h += "<tr><td>\(escape(r.name))</td><td>\(r.features)</td><td>\(percent(m.nsc))</td><td>\(percent(m.nscb))</td><td>\(percent(m.perCompound))</td><td>\(m.map.map { String(format: "%.3f", $0) } ?? "n/a")</td><td>\(percent(r.crops.logisticBalancedAccuracy))</td></tr>\n"
        }
        h += "</table><p>Chance for NSC is about 1 in \(synth.moaCount). NSC: nearest treatment of another compound; NSCB: also from another batch; per-compound: the mean over compounds of their treatments' accuracy (CytoGAN's Table 1 figure); mAP: mean average precision of same-mechanism treatments.</p>\n"
        if let best = results.max(by: { $0.report.score.nsc < $1.report.score.nsc }) {
            h += "<h2>Confusion matrix (NSC), \(escape(best.name))</h2>\n" + confusionSVG(best.report.score) + "\n"
        }
        h += "<h2>Training</h2>\n" + lossSVG() + "\n<p>Discriminator (blue) and generator (orange) losses by step.</p>\n"
        h += "<h2>Cells</h2>\n"
        h += "<p>How real the generated cells look, against \(realism.count) of the screen's crops (two more sets of \(realism.count) real crops make the floor): "
        h += String(format: "a small CNN trained to tell real from generated cells is right %.1f%% of the time on held-out cells (50%%: it cannot tell; real against real it scores %.1f%%); ",
                    realism.accuracy * 100, realism.nullAccuracy * 100)
        h += "the Frechet distance of 41 per-cell measurements (intensity, radial profile, sharpness, texture, nucleus shape) is "
        h += (realism.ratio.map { String(format: "%.1f", $0) } ?? "n/a") + " times the distance between two halves of the real crops; "
        h += "sharpness of generated over real cells per channel: " + realism.sharpness.map { String(format: "%.2f", $0) }.joined(separator: ", ")
        h += String(format: ". Of the distance (%.2f), the measurements that add most: ", realism.distance)
        h += realism.largestParts(3).map { escape($0.label) + String(format: " %.2f", $0.adds) }.joined(separator: ", ")
        h += ". The same measure for any model: <code>cytogan evaluate realism</code>.</p>\n"
        for (file, caption) in pictures.files {
            h += "<figure><img src=\"\(file)\" alt=\"\(escape(caption))\"><figcaption>\(escape(caption))</figcaption></figure>\n"
        }
        h += "<h2>Timings</h2><table><tr><th>step</th><th>seconds</th></tr>\n"
        for (name, s) in timings { h += "<tr><td>\(escape(name))</td><td>\(String(format: "%.1f", s))</td></tr>\n" }
        h += "<tr><td>total</td><td>\(String(format: "%.1f", totalSeconds))</td></tr></table>\n"
        h += "<p>Every number on this page is in <code>scores.json</code>; the trained model is <code>model.safetensors</code>; the screen's crops and manifest are in <code>data/</code>.</p></body></html>\n"
        return h
    }

    /// The MOA x MOA confusion matrix as an SVG heat map with labels.
    func confusionSVG(_ s: MOAScore) -> String {
        let n = s.moas.count, cell = 34, left = 200, top = 150
        let w = left + n * cell + 20, h = top + n * cell + 20
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" font-size=\"11\">"
        let maxCount = max(1, s.confusionNSC.flatMap { $0 }.max() ?? 1)
        for i in 0..<n {
            svg += "<text x=\"\(left - 6)\" y=\"\(top + i * cell + cell / 2 + 4)\" text-anchor=\"end\">\(escape(s.moas[i]))</text>"
            svg += "<text transform=\"translate(\(left + i * cell + cell / 2 + 4),\(top - 6)) rotate(-60)\">\(escape(s.moas[i]))</text>"
            for j in 0..<n {
                let c = s.confusionNSC[i][j]
                let v = Double(c) / Double(maxCount)
                let shade = Int(255 - 200 * v)
                let fill = i == j ? "rgb(\(shade),\(Int(255 - 120 * v)),\(shade))" : "rgb(255,\(shade),\(shade))"
                svg += "<rect x=\"\(left + j * cell)\" y=\"\(top + i * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(fill)\" stroke=\"#ccc\"/>"
                if c > 0 { svg += "<text x=\"\(left + j * cell + cell / 2)\" y=\"\(top + i * cell + cell / 2 + 4)\" text-anchor=\"middle\">\(c)</text>" }
            }
        }
        svg += "<text x=\"\(left)\" y=\"\(h - 4)\">rows: true mechanism; columns: the nearest neighbour's</text></svg>"
        return svg
    }

    /// Loss curves as an SVG line chart.
    func lossSVG() -> String {
        guard curve.count >= 2 else { return "<p>(too few progress points to draw)</p>" }
        let w = 640.0, h = 220.0, pad = 36.0
        let steps = curve.map { Double($0.step) }
        let values = curve.flatMap { [Double($0.d), Double($0.g)] }.filter { $0.isFinite }
        let (s0, s1) = (steps.min()!, max(steps.max()!, steps.min()! + 1))
        let (v0, v1) = (min(values.min() ?? 0, 0), max(values.max() ?? 1, 1e-6))
        func x(_ s: Double) -> Double { pad + (s - s0) / (s1 - s0) * (w - 2 * pad) }
        func y(_ v: Double) -> Double { h - pad - (v - v0) / (v1 - v0) * (h - 2 * pad) }
        func line(_ pick: ((step: Int, d: Float, g: Float)) -> Float, _ colour: String) -> String {
            let pts = curve.map { String(format: "%.1f,%.1f", x(Double($0.step)), y(Double(pick($0)))) }.joined(separator: " ")
            return "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\" points=\"\(pts)\"/>"
        }
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-size=\"11\">"
            + "<rect x=\"\(pad)\" y=\"\(pad)\" width=\"\(w - 2 * pad)\" height=\"\(h - 2 * pad)\" fill=\"none\" stroke=\"#ccc\"/>"
            + line({ $0.d }, "#1f77b4") + line({ $0.g }, "#ff7f0e")
            + String(format: "<text x=\"%.0f\" y=\"%.0f\">step %.0f</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">step %.0f</text>", pad, h - 10, s0, w - pad, h - 10, s1 - (s1 == s0 + 1 ? 1 : 0))
            + String(format: "<text x=\"4\" y=\"%.0f\">%.2f</text><text x=\"4\" y=\"%.0f\">%.2f</text>", y(v1) + 4, v1, y(v0), v0)
            + "</svg>"
    }
}
