import CytoCore
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import CytoNN

/// A CPU that OpenBLAS did not recognise gets the kernel its flags allow; a recognised one is
/// left alone; a CPU without AVX2 and FMA keeps what it has.
@Test func blasKernelChoiceFollowsTheCPUFlags() {
    let avx512: Set<String> = ["sse3", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
    let avx2: Set<String> = ["sse3", "avx", "avx2", "fma"]
    #expect(BLASKernels.recommended(current: "Prescott", cpuFlags: avx512) == "SkylakeX")
    #expect(BLASKernels.recommended(current: "Prescott", cpuFlags: avx2) == "Haswell")
    #expect(BLASKernels.recommended(current: "Sandybridge", cpuFlags: avx2) == "Haswell")
    // Xeon Phi style AVX-512 without BW/DQ/VL: only the AVX2 kernels are safe.
    #expect(BLASKernels.recommended(current: "Prescott", cpuFlags: avx2.union(["avx512f", "avx512cd"])) == "Haswell")
    #expect(BLASKernels.recommended(current: "SkylakeX", cpuFlags: avx512) == nil)
    #expect(BLASKernels.recommended(current: "Zen", cpuFlags: avx2) == nil)
    #expect(BLASKernels.recommended(current: "Haswell", cpuFlags: avx512) == nil)
    #expect(BLASKernels.recommended(current: "Prescott", cpuFlags: ["sse3", "avx"]) == nil)
    #expect(BLASKernels.recommended(current: "Prescott", cpuFlags: []) == nil)
}

/// The flags line of a cpuinfo file is read into a set (and a missing file gives none).
@Test func cpuFlagsAreReadFromCpuinfo() throws {
    let path = "/tmp/cytogan-cpuinfo-\(getpid())"
    try AtomicFile.write(Array("processor\t: 0\nflags\t\t: fpu sse3 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n".utf8), to: path)
    defer { unlink(path) }
    #expect(BLASKernels.cpuFlags(cpuinfo: path) == ["fpu", "sse3", "avx2", "fma"])
    #expect(BLASKernels.cpuFlags(cpuinfo: path + ".missing").isEmpty)
}
