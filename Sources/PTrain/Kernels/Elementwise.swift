/// `dst[i] += src[i]` for `i < count`, sixteen lanes at a time. Cost: `count` adds.
package func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
  var i = 0
  while i + 16 <= count {
    let sum =
      UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD16<Float>.self)
      + UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self)
    UnsafeMutableRawPointer(dst + i).storeBytes(of: sum, as: SIMD16<Float>.self)
    i += 16
  }
  while i < count {
    dst[i] += src[i]
    i += 1
  }
}

/// Copies `count` Floats from `source` to `target` (which must not overlap) inline, eight
/// lanes at a time and the rest in 4-, 2- and 1-lane steps: `update(from:count:)` calls
/// memmove, whose call costs more than copying the few dozen Floats of an im2col run (a
/// 3-channel 3×3 patch row is 9). Cost: `count` loads and stores.
@inline(__always)
package func copyFloats(_ source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
  let from = UnsafeRawPointer(source)
  let to = UnsafeMutableRawPointer(target)
  let stride = MemoryLayout<Float>.stride
  var i = 0
  while i + 8 <= count {
    to.storeBytes(
      of: from.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self), toByteOffset: i * stride,
      as: SIMD8<Float>.self)
    i += 8
  }
  if count - i >= 4 {
    to.storeBytes(
      of: from.loadUnaligned(fromByteOffset: i * stride, as: SIMD4<Float>.self), toByteOffset: i * stride,
      as: SIMD4<Float>.self)
    i += 4
  }
  if count - i >= 2 {
    to.storeBytes(
      of: from.loadUnaligned(fromByteOffset: i * stride, as: SIMD2<Float>.self), toByteOffset: i * stride,
      as: SIMD2<Float>.self)
    i += 2
  }
  if count - i >= 1 { target[i] = source[i] }
}

/// Sets `count` Floats at `target` to zero inline, as `copyFloats` copies: for the few
/// Floats of an im2col run past the image's edge. Cost: `count` stores.
@inline(__always)
package func zeroFloats(_ target: UnsafeMutablePointer<Float>, count: Int) {
  let to = UnsafeMutableRawPointer(target)
  let stride = MemoryLayout<Float>.stride
  var i = 0
  while i + 8 <= count {
    to.storeBytes(of: SIMD8<Float>(), toByteOffset: i * stride, as: SIMD8<Float>.self)
    i += 8
  }
  if count - i >= 4 {
    to.storeBytes(of: SIMD4<Float>(), toByteOffset: i * stride, as: SIMD4<Float>.self)
    i += 4
  }
  if count - i >= 2 {
    to.storeBytes(of: SIMD2<Float>(), toByteOffset: i * stride, as: SIMD2<Float>.self)
    i += 2
  }
  if count - i >= 1 { target[i] = 0 }
}

/// `output[i] = a[i] + b[i]` for `i < count`, through a ReLU with `relu`, sixteen lanes
/// at a time: a residual block's addition. `output` may be `a` or `b`. Cost: `count` adds.
package func addForward(
  _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int, relu applyReLU: Bool,
  output: UnsafeMutablePointer<Float>
) {
  var i = 0
  while i + 16 <= count {
    let sum =
      UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self)
      + UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float>.self)
    UnsafeMutableRawPointer(output + i).storeBytes(of: applyReLU ? relu(sum) : sum, as: SIMD16<Float>.self)
    i += 16
  }
  while i < count {
    let sum = a[i] + b[i]
    output[i] = applyReLU ? max(sum, 0) : sum
    i += 1
  }
}

/// Sets each of `rows` rows of `matrix` (row-major, `columns` wide) to `row`.
/// Cost: rows × columns stores.
package func fillRows(
  _ matrix: UnsafeMutablePointer<Float>, rows: Int, columns: Int, with row: UnsafePointer<Float>
) {
  guard columns % 16 == 0 else {
    for r in 0..<rows { (matrix + r * columns).update(from: row, count: columns) }
    return
  }
  let source = UnsafeRawPointer(row)
  for r in 0..<rows {
    let target = UnsafeMutableRawPointer(matrix + r * columns)
    for offset in stride(from: 0, to: columns * MemoryLayout<Float>.stride, by: 64) {
      target.storeBytes(
        of: source.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self), toByteOffset: offset,
        as: SIMD16<Float>.self)
    }
  }
}

/// Adds the column sums of `matrix` (row-major, rows × columns) to `sums`, adding the
/// rows in order. The running sums stay in registers, two 16-column blocks at a time, so
/// the adds form two independent chains instead of one chain through memory.
/// Cost: rows × columns adds.
package func addColumnSums(
  of matrix: UnsafePointer<Float>, rows: Int, columns: Int, to sums: UnsafeMutablePointer<Float>
) {
  let stride = columns * MemoryLayout<Float>.stride
  var c = 0
  while c + 32 <= columns {
    let base = UnsafeRawPointer(matrix + c)
    var first = UnsafeRawPointer(sums + c).loadUnaligned(as: SIMD16<Float>.self)
    var second = UnsafeRawPointer(sums + c + 16).loadUnaligned(as: SIMD16<Float>.self)
    for r in 0..<rows {
      first += base.loadUnaligned(fromByteOffset: r * stride, as: SIMD16<Float>.self)
      second += base.loadUnaligned(fromByteOffset: r * stride + 64, as: SIMD16<Float>.self)
    }
    UnsafeMutableRawPointer(sums + c).storeBytes(of: first, as: SIMD16<Float>.self)
    UnsafeMutableRawPointer(sums + c + 16).storeBytes(of: second, as: SIMD16<Float>.self)
    c += 32
  }
  for column in c..<columns {
    var sum = sums[column]
    for r in 0..<rows { sum += matrix[r * columns + column] }
    sums[column] = sum
  }
}

/// ReLU of 16 lanes, `max(v, 0)`, as one compare and blend. The conv kernels apply it
/// as they store their outputs, and `maxPool2x2Backward(throughReLU:)` takes its
/// gradient, so no separate pass over the activations is needed.
@inline(__always)
package func relu(_ v: SIMD16<Float>) -> SIMD16<Float> {
  v.replacing(with: 0, where: v .< 0)
}

/// Converts one image's bytes (`pixels` × `channels`, interleaved) to standardised Floats,
/// `x = byte · scale[c] + shift[c]` with `scale = 1 / (255 · std)` and `shift = −mean / std`
/// (see `Normalization`). Cost: one multiply-add per value.
package func normalizePixels(
  _ bytes: UnsafePointer<UInt8>, pixels: Int, channels: Int, scale: UnsafePointer<Float>,
  shift: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>
) {
  if channels == 1 {
    let (a, b) = (scale[0], shift[0])
    for i in 0..<pixels { x[i] = Float(bytes[i]) * a + b }
    return
  }
  for p in 0..<pixels {
    for c in 0..<channels { x[p * channels + c] = Float(bytes[p * channels + c]) * scale[c] + shift[c] }
  }
}

/// The first index in `range` whose value in `values` is infinite or NaN, or nil: sixteen
/// lanes at a time (`v − v` is NaN exactly there), then one by one inside the first
/// block that has one. Cost: `range.count` subtractions and compares.
package func firstNonFinite(in values: UnsafePointer<Float>, _ range: Range<Int>) -> Int? {
  var i = range.lowerBound
  while i + 16 <= range.upperBound {
    let v = UnsafeRawPointer(values + i).loadUnaligned(as: SIMD16<Float>.self)
    if any((v - v) .!= SIMD16<Float>()) { break }
    i += 16
  }
  return (i..<range.upperBound).first { !values[$0].isFinite }
}
