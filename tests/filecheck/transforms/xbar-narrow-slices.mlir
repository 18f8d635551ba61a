// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8 cell-bits=4}' | filecheck %s --check-prefix=PAPER
// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8 cell-bits=4},xbar-narrow-slices' | filecheck %s --check-prefix=NARROW
// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8 cell-bits=4 mapping=of},xbar-narrow-slices' | filecheck %s --check-prefix=OFFSET

// A narrow 5-bit weight on 4-bit cells: the paper slices it in S = ceil(5/4) = 2, but with
// differential columns the sign is the column pair, so the magnitude (<= 15) needs one slice.
// Physical columns 2*m*S: 12 -> 6, column tiles of 8: 2 -> 1, so per inference
// writes = row_tiles * col_tiles: 4 -> 2, and cycles = P * writes * ceil(a/d): 16 -> 8.

func.func @main(%x: tensor<1x6xf32>) -> tensor<1x3x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x6xf32>) -> tensor<1x6x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[1, -1, 2], [2, 3, 4], [0, 15, -15], [-7, 1, 5], [3, 3, 3], [-2, -4, 6]]> : tensor<6x3xi8> : tensor<6x3x!cimq.q<s5n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x6x!cimq.q<u4:0.5>>, tensor<6x3x!cimq.q<s5n:0.25>>) -> tensor<1x3x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x3x!cimq.q<s32:0.125>>
}

// PAPER:       xbar.layer "fc"
// PAPER-SAME:  slices = 2 : i64, row_tiles = 2 : i64, col_tiles = 2 : i64, chunks = 4 : i64
// PAPER:       xbar.map {{.*}} slices = 2 : i64{{.*}} -> (!xbar.cells<1x6x12, c4>
// PAPER:       %[[TWO:.*]] = arith.constant 2 : index
// PAPER:       scf.for %rt = %{{.*}} to %[[TWO]]
// PAPER-NEXT:  scf.for %ct = %{{.*}} to %[[TWO]]

// NARROW:      xbar.layer "fc"
// NARROW-SAME: slices = 1 : i64, row_tiles = 2 : i64, col_tiles = 1 : i64, chunks = 4 : i64
// NARROW:      xbar.map {{.*}} slices = 1 : i64{{.*}} -> (!xbar.cells<1x6x6, c4>
// NARROW:      %[[ONE:.*]] = arith.constant 1 : index
// NARROW:      %[[TWO:.*]] = arith.constant 2 : index
// NARROW:      scf.for %rt = %{{.*}} to %[[TWO]]
// NARROW-NEXT: scf.for %ct = %{{.*}} to %[[ONE]]

// The offset mapping stores w + 2^(w-1), which needs all five bits: nothing changes.
// OFFSET:      xbar.layer "fc"
// OFFSET-SAME: mapping = "of"
// OFFSET-SAME: slices = 2 : i64
