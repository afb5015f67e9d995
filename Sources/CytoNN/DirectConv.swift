/// Direct stride-1 convolution kernels for layers with few output channels (the generator's
/// last layer, 32 -> 3 channels): there a GEMM has M = 3 and runs at a few GFLOP/s, while a
/// direct loop keeps four output channels x 8 pixels in registers and reads the input from cache.
/// Every loop here runs over one zero-padded image, so the inner loops have no bounds tests.
enum DirectConv {
    /// Output channels computed together.
    static let tile = 4
    /// Pixels computed together along a row (two SIMD4 vectors).
    static let block = 8

    @inline(__always)
    static func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
    }

    /// Padded row length for `width` output columns and kernel width `kw`: whole 8-pixel blocks
    /// never read past the row.
    static func paddedWidth(outputWidth: Int, kw: Int) -> Int {
        (outputWidth + block - 1) / block * block + kw - 1
    }

    /// Copies image planes [C][h][w] into a zero buffer [C][hp][wp] at (top, left).
    static func pad(_ src: UnsafePointer<Float>, channels: Int, h: Int, w: Int, into dst: UnsafeMutablePointer<Float>,
                    hp: Int, wp: Int, top: Int, left: Int) {
        dst.update(repeating: 0, count: channels * hp * wp)
        for c in 0..<channels {
            for y in 0..<h {
                let yy = y + top
                guard yy >= 0 && yy < hp else { continue }
                // Columns x with 0 <= x + left < wp.
                let lo = max(0, -left), hi = min(w, wp - left)
                if hi > lo { (dst + (c * hp + yy) * wp + left + lo).update(from: src + (c * h + y) * w + lo, count: hi - lo) }
            }
        }
    }

    /// Packs weights [O][C][kh][kw] as [O/4 tiles][C][kh][kw][4] (missing channels zero).
    /// With `flipped`, packs the transposed, rotated kernel used for the input gradient:
    /// tile over C, entries W[o][c][kh-1-ky][kw-1-kx] as [C/4][O][kh][kw][4].
    static func pack(_ w: UnsafePointer<Float>, o: Int, c: Int, kh: Int, kw: Int, flipped: Bool, into p: UnsafeMutablePointer<Float>) {
        let outs = flipped ? c : o, ins = flipped ? o : c
        let tiles = (outs + tile - 1) / tile
        p.update(repeating: 0, count: tiles * ins * kh * kw * tile)
        for oo in 0..<outs {
            for ii in 0..<ins {
                for ky in 0..<kh {
                    for kx in 0..<kw {
                        let v = flipped ? w[((ii * c + oo) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)] : w[((oo * c + ii) * kh + ky) * kw + kx]
                        p[((((oo / tile) * ins + ii) * kh + ky) * kw + kx) * tile + oo % tile] = v
                    }
                }
            }
        }
    }

    /// out[o][y][x] = bias[o] + sum over (i, ky, kx) of packed weight * pad[i][y + ky][x + kx], for
    /// o < outs, y < ho, x < wo, with `pad` holding `ins` planes of hp x wp (wp from `paddedWidth`).
    static func convolve(pad: UnsafePointer<Float>, ins: Int, hp: Int, wp: Int, packed: UnsafePointer<Float>, outs: Int,
                         kh: Int, kw: Int, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, ho: Int, wo: Int) {
        let tiles = (outs + tile - 1) / tile
        let perTile = ins * kh * kw * tile
        for t in 0..<tiles {
            let wt = packed + t * perTile
            let o0 = t * tile, valid = min(tile, outs - o0)
            let b0 = bias.map { $0[o0] } ?? 0
            let b1 = valid > 1 ? bias.map { $0[o0 + 1] } ?? 0 : 0
            let b2 = valid > 2 ? bias.map { $0[o0 + 2] } ?? 0 : 0
            let b3 = valid > 3 ? bias.map { $0[o0 + 3] } ?? 0 : 0
            for y in 0..<ho {
                var x = 0
                while x < wo {
                    var a00 = SIMD4<Float>(repeating: b0), a01 = a00
                    var a10 = SIMD4<Float>(repeating: b1), a11 = a10
                    var a20 = SIMD4<Float>(repeating: b2), a21 = a20
                    var a30 = SIMD4<Float>(repeating: b3), a31 = a30
                    var wp_ = wt
                    for i in 0..<ins {
                        for ky in 0..<kh {
                            let row = pad + (i * hp + y + ky) * wp + x
                            for kx in 0..<kw {
                                let v0 = load4(row + kx), v1 = load4(row + kx + 4)
                                let w0 = SIMD4<Float>(repeating: wp_[0]), w1 = SIMD4<Float>(repeating: wp_[1])
                                let w2 = SIMD4<Float>(repeating: wp_[2]), w3 = SIMD4<Float>(repeating: wp_[3])
                                a00 += w0 * v0; a01 += w0 * v1
                                a10 += w1 * v0; a11 += w1 * v1
                                a20 += w2 * v0; a21 += w2 * v1
                                a30 += w3 * v0; a31 += w3 * v1
                                wp_ += 4
                            }
                        }
                    }
                    let n = min(block, wo - x)
                    store(a00, a01, to: out + ((o0 + 0) * ho + y) * wo + x, count: n)
                    if valid > 1 { store(a10, a11, to: out + ((o0 + 1) * ho + y) * wo + x, count: n) }
                    if valid > 2 { store(a20, a21, to: out + ((o0 + 2) * ho + y) * wo + x, count: n) }
                    if valid > 3 { store(a30, a31, to: out + ((o0 + 3) * ho + y) * wo + x, count: n) }
                    x += block
                }
            }
        }
    }

    @inline(__always)
    static func store(_ a: SIMD4<Float>, _ b: SIMD4<Float>, to p: UnsafeMutablePointer<Float>, count: Int) {
        if count == block {
            UnsafeMutableRawPointer(p).storeBytes(of: a, as: SIMD4<Float>.self)
            UnsafeMutableRawPointer(p + 4).storeBytes(of: b, as: SIMD4<Float>.self)
        } else {
            for i in 0..<count { p[i] = i < 4 ? a[i] : b[i - 4] }
        }
    }

    /// dW[o][c][ky][kx] += sum over (y, x) of grad[o][y][x] * pad[y + ky][x + kx] for ONE input
    /// channel c of one image: `pad` is that channel's padded plane, `grad` the image's output
    /// gradient [outs][ho][wo], `dw` the [O][C][kh][kw] gradient.
    static func weightGradient(pad: UnsafePointer<Float>, wp: Int, grad: UnsafePointer<Float>, outs: Int, ho: Int, wo: Int,
                               c: Int, channels: Int, kh: Int, kw: Int, into dw: UnsafeMutablePointer<Float>) {
        let vec = wo / 4 * 4
        var o0 = 0
        while o0 < outs {
            let valid = min(tile, outs - o0)
            let g0 = grad + o0 * ho * wo
            let g1 = grad + (o0 + min(1, valid - 1)) * ho * wo
            let g2 = grad + (o0 + min(2, valid - 1)) * ho * wo
            let g3 = grad + (o0 + min(3, valid - 1)) * ho * wo
            for ky in 0..<kh {
                for kx in 0..<kw {
                    var s0 = SIMD4<Float>(), s1 = s0, s2 = s0, s3 = s0
                    var t0: Float = 0, t1: Float = 0, t2: Float = 0, t3: Float = 0
                    for y in 0..<ho {
                        let row = pad + (y + ky) * wp + kx, r = y * wo
                        var x = 0
                        while x < vec {
                            let v = load4(row + x)
                            s0 += load4(g0 + r + x) * v
                            s1 += load4(g1 + r + x) * v
                            s2 += load4(g2 + r + x) * v
                            s3 += load4(g3 + r + x) * v
                            x += 4
                        }
                        while x < wo {
                            let v = row[x]
                            t0 += g0[r + x] * v; t1 += g1[r + x] * v; t2 += g2[r + x] * v; t3 += g3[r + x] * v
                            x += 1
                        }
                    }
                    let at = ((o0 * channels + c) * kh + ky) * kw + kx, step = channels * kh * kw
                    dw[at] += s0.sum() + t0
                    if valid > 1 { dw[at + step] += s1.sum() + t1 }
                    if valid > 2 { dw[at + 2 * step] += s2.sum() + t2 }
                    if valid > 3 { dw[at + 3 * step] += s3.sum() + t3 }
                }
            }
            o0 += tile
        }
    }
}

extension SIMD4 where Scalar == Float {
    @inline(__always) func sum() -> Float { (self[0] + self[1]) + (self[2] + self[3]) }
}
