/// `dst[i] += src[i]` for `i < count`, sixteen lanes at a time. Cost: `count` adds.
@inlinable
public func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
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

/// Sets each of `rows` rows of `matrix` (row-major, `columns` wide) to `row`.
/// Cost: rows × columns stores.
@inlinable
public func fillRows(
  _ matrix: UnsafeMutablePointer<Float>, rows: Int, columns: Int, with row: UnsafePointer<Float>
) {
  for r in 0..<rows { (matrix + r * columns).update(from: row, count: columns) }
}

/// Adds the column sums of `matrix` (row-major, rows × columns) to `sums`.
/// Cost: rows × columns adds.
@inlinable
public func addColumnSums(
  of matrix: UnsafePointer<Float>, rows: Int, columns: Int, to sums: UnsafeMutablePointer<Float>
) {
  for r in 0..<rows { addInPlace(sums, matrix + r * columns, count: columns) }
}

/// ReLU in place: `x[i] = max(x[i], 0)`. Cost: `count` compares.
@inlinable
public func reluForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
  var i = 0
  while i + 16 <= count {
    let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
    UnsafeMutableRawPointer(x + i).storeBytes(
      of: v.replacing(with: 0, where: v .< 0), as: SIMD16<Float>.self)
    i += 16
  }
  while i < count {
    x[i] = max(x[i], 0)
    i += 1
  }
}

/// ReLU backward in place: `gradient[i] = 0` wherever the ReLU output `activation[i]`
/// is not positive. Cost: `count` compares.
@inlinable
public func reluBackward(
  activation: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>, count: Int
) {
  var i = 0
  while i + 16 <= count {
    let a = UnsafeRawPointer(activation + i).loadUnaligned(as: SIMD16<Float>.self)
    let g = UnsafeRawPointer(gradient + i).loadUnaligned(as: SIMD16<Float>.self)
    UnsafeMutableRawPointer(gradient + i).storeBytes(
      of: g.replacing(with: 0, where: a .<= 0), as: SIMD16<Float>.self)
    i += 16
  }
  while i < count {
    if activation[i] <= 0 { gradient[i] = 0 }
    i += 1
  }
}

/// Converts `count` pixel bytes to standardised Floats, `x = (byte / 255 - mean) / std`
/// with MNIST's training-set mean 0.1307 and standard deviation 0.3081 (the
/// normalisation of PyTorch's MNIST example). Cost: `count` multiply-adds.
@inlinable
public func normalizePixels(_ bytes: UnsafePointer<UInt8>, count: Int, into x: UnsafeMutablePointer<Float>) {
  let mean: Float = 0.1307
  let deviation: Float = 0.3081
  let scale = 1 / (255 * deviation)
  let shift = -mean / deviation
  for i in 0..<count { x[i] = Float(bytes[i]) * scale + shift }
}
