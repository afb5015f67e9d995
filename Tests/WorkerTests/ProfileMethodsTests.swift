import CytoCore
import Foundation
import Profiling
import Testing
@testable import Worker

/// profiles/* through the protocol on hand-sized tables whose answers are worked out here, and the
/// profile store's all-or-nothing appends.
@Suite struct ProfileMethodsTests {
    /// A folder of its own for one test's files.
    func folder() -> String {
        let d = NSTemporaryDirectory() + "cytogan-profile-tests-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func write(_ text: String, _ dir: String, _ name: String = "t.csv") -> String {
        let p = dir + "/" + name
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// Two plates in one batch and one plate in another; controls C, values chosen so that
    /// means, deviations and results are exact.
    let wells = """
        Metadata_Plate,Metadata_Batch,Metadata_Compound,f
        P1,B1,C,1
        P1,B1,C,3
        P1,B1,x,5
        P2,B1,C,10
        P2,B1,C,14
        P2,B1,x,16
        P3,B2,C,0
        P3,B2,C,2
        P3,B2,x,4

        """

    @Test func normalizeGroupsByEveryCombinationOfByColumns() throws {
        let h = Harness(), dir = folder()
        let path = write(wells, dir)
        let r = h.call("profiles/normalize", ["source": ["path": .string(path)], "controls": ["column": "Metadata_Compound", "values": ["C"]],
                                              "by": ["Metadata_Batch", "Metadata_Plate"], "method": "standardize"])
        #expect(r["result"]?["rows"] == 9 && r["result"]?["controlRows"] == 6)
        // The helper column that made the groups is gone again.
        #expect(r["result"]?["metadataColumns"] == ["Metadata_Plate", "Metadata_Batch", "Metadata_Compound"])
        let t = try h.server.profiles.table("normalized", field: "t")
        // Controls (1, 3): mean 2, sd sqrt(2); (10, 14): 12, sd 2 sqrt(2); (0, 2): 1, sqrt(2).
        let s2 = 2.0.squareRoot()
        let want = [-1 / s2, 1 / s2, 3 / s2, -1 / s2, 1 / s2, 2 / s2, -1 / s2, 1 / s2, 3 / s2]
        #expect(t.features.count == 9)
        for (a, b) in zip(t.features, want) { #expect(abs(a - b) < 1e-12) }
        // Grouped by batch only, P1 and P2 share their controls: mean 7, sample sd of (1, 3, 10, 14).
        _ = h.call("profiles/normalize", ["source": ["path": .string(path)], "controls": ["column": "Metadata_Compound", "values": ["C"]],
                                          "by": ["Metadata_Batch"], "method": "standardize", "into": "b"])
        let b = try h.server.profiles.table("b", field: "t")
        let sd = ((36.0 + 16 + 9 + 49) / 3).squareRoot()
        #expect(abs(b.features[2] - (5 - 7) / sd) < 1e-12)
    }

    @Test func numbersMatchControlsByValueAndStringsExactly() throws {
        let h = Harness(), dir = folder()
        let path = write("Metadata_Dose,f\n0,1\n0.0,3\n1,8\n0e0,5\n", dir)
        let r = h.call("profiles/normalize", ["source": ["path": .string(path)], "controls": ["column": "Metadata_Dose", "values": [0]]])
        #expect(r["result"]?["controlRows"] == 3)
        let s = h.call("profiles/normalize", ["source": ["path": .string(path)], "controls": ["column": "Metadata_Dose", "values": ["0"]]])
        // One control row: no spread to estimate.
        #expect(s.code == -32014 && s.errorData?["field"] == "controls")
    }

    @Test func aQueuedRequestCancelledBeforeItRunsKeepsNothing() throws {
        let h = Harness(), dir = folder()
        let path = write(wells, dir)
        h.send(["jsonrpc": "2.0", "id": "slow", "method": "test/slow", "params": ["n": 300]])
        h.send(["jsonrpc": "2.0", "id": "n", "method": "profiles/normalize",
                "params": ["source": ["path": .string(path)], "controls": ["column": "Metadata_Compound", "values": ["C"]]]])
        h.send(["jsonrpc": "2.0", "method": "notifications/cancelled", "params": ["requestId": "n"]])
        #expect(h.response("n").code == -32800)
        #expect(h.response("slow")["result"] == ["n": 300])
        #expect(h.call("profiles/list")["result"] == ["tables": []])
    }

    @Test func scoreNeedsTwoCompoundsAndNamesMissingColumns() {
        let h = Harness(), dir = folder()
        let one = write("Metadata_Compound,Metadata_Concentration,Metadata_MOA,f\na,1,m,1\na,2,m,2\n", dir)
        let r = h.call("profiles/score", ["source": ["path": .string(one)]])
        #expect(r.code == -32014 && r.errorData?["field"] == "compound" && r.errorData?["path"] == .string(one))
        let noMOA = write("Metadata_Compound,Metadata_Concentration,f\na,1,1\nb,2,2\n", dir, "n.csv")
        #expect(h.call("profiles/score", ["source": ["path": .string(noMOA)]]).errorData?["field"] == "moa")
        #expect(h.call("profiles/score", ["source": ["path": .string(noMOA)], "moa": ""]).code == -32602)
    }

    /// Two compounds of one MOA and one of another on two plates: every treatment's nearest
    /// neighbour by cosine is worked out by hand.
    @Test func scoresOfAHandMadeTable() {
        let h = Harness(), dir = folder()
        let path = write("""
            Metadata_Plate,Metadata_Compound,Metadata_Concentration,Metadata_MOA,f1,f2
            P1,a,1,m1,1,0
            P2,b,1,m1,2,0.2
            P1,c,1,m2,0,1
            P2,d,1,m2,0.1,3

            """, dir)
        let r = h.call("profiles/score", ["source": ["path": .string(path)], "confusion": true])["result"]
        // a -> b (m1), b -> a (m1), c -> d (m2), d -> c (m2): all correct; batches = plates, and
        // every nearest neighbour is on the other plate, so NSCB is the same.
        #expect(r?["nsc"] == ["accuracy": 1, "correct": 4, "total": 4])
        #expect(r?["nscb"] == ["accuracy": 1, "correct": 4, "total": 4])
        #expect(r?["perCompound"]?["mean"] == 1)
        #expect(r?["map"] == 1)
        #expect(r?["confusion"] == ["labels": ["m1", "m2"], "matrix": [[2, 0], [0, 2]]])
        // Without a plate column there is no batch: NSCB is null.
        let flat = write("Metadata_Compound,Metadata_Concentration,Metadata_MOA,f1,f2\na,1,m1,1,0\nb,1,m1,1,0.1\nc,1,m2,0,1\n", dir, "f.csv")
        let s = h.call("profiles/score", ["source": ["path": .string(flat)]])["result"]
        #expect(s?["nscb"] == .null)
        // c's only other-compound MOA-mate does not exist: mAP over a and b only (each ranks its
        // mate first): 1; c's neighbour is b (cos 0.0995 vs 0 for a), wrong.
        #expect(s?["nsc"] == ["accuracy": .double(2.0 / 3), "correct": 2, "total": 3])
        #expect(s?["map"] == 1)
    }

    @Test func appendAddsColumnsAndRefusesOtherFeatures() throws {
        let store = ProfileStore()
        let f = ["CytoGAN_0", "CytoGAN_1"]
        #expect(try store.append("cells", metadataColumns: ["Metadata_Plate"], metadata: [["P1"]], featureNames: f, features: [1, 2]) == 1)
        #expect(try store.append("cells", metadataColumns: ["Metadata_Well", "Metadata_Plate"], metadata: [["A01", "P2"], ["A02", "P2"]],
                                 featureNames: f, features: [3, 4, 5, 6]) == 3)
        let t = try store.table("cells", field: "table")
        #expect(t.metadataColumns == ["Metadata_Plate", "Metadata_Well"])
        #expect(t.metadata == [["P1", ""], ["P2", "A01"], ["P2", "A02"]])
        #expect(t.features == [1, 2, 3, 4, 5, 6])
        #expect(throws: CytoError.self) {
            try store.append("cells", metadataColumns: [], metadata: [[]], featureNames: ["x"], features: [1])
        }
        #expect(try store.table("cells", field: "table") == t)
        #expect(store.drop("cells") && !store.drop("cells"))
    }
}
