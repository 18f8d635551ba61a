// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=8 cols=8},xbar-pack' | filecheck %s
// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=8 cols=8},xbar-pack{blocks=false share=false}' | filecheck %s --check-prefix=OFF

// @depthwise: a 1x1 depthwise conv of 4 channels is H = 4 repeats of a 1 x 1 matrix (1 row,
// 2 columns at w = 4, dc). Four fit one 8 x 8 tile block-diagonally: one programmed repeat of a
// 4 x 8 matrix, 1 write and P * 4 = 36 cycles instead of 4 writes and 144 cycles.
func.func @depthwise(%x: tensor<1x4x3x3xf32>) -> tensor<1x4x3x3x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x4x3x3xf32>) -> tensor<1x4x3x3x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[[[3]]], [[[-2]]], [[[7]]], [[[-7]]]]> : tensor<4x1x1x1xi8> : tensor<4x1x1x1x!cimq.q<s4n:0.25>>
  %y = cimq.conv %q, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, group = 4 : i64, layer = "dw"} : (tensor<1x4x3x3x!cimq.q<u4:0.5>>, tensor<4x1x1x1x!cimq.q<s4n:0.25>>) -> tensor<1x4x3x3x!cimq.q<s32:0.125>>
  func.return %y : tensor<1x4x3x3x!cimq.q<s32:0.125>>
}

// CHECK-LABEL: func.func @depthwise
// CHECK:       xbar.layer "dw"
// CHECK-SAME:  H = 4 : i64
// CHECK-SAME:  blocks = 4 : i64
// CHECK:       xbar.map %w {{.*}}blocks = 4 : i64{{.*}} -> (!xbar.cells<1x4x8, c4>, tensor<8x2xi64>, tensor<1x4xi64>)
// CHECK:       %xp = xbar.pack_blocks %xu {blocks = 4 : i64} : (tensor<1x4x9x1xi32>) -> tensor<1x1x9x4xi32>
// CHECK:       %acc = xbar.recombine {{.*}} -> tensor<1x1x9x4xi32>
// CHECK-NEXT:  %y = xbar.unpack_blocks %acc {blocks = 4 : i64} : (tensor<1x1x9x4xi32>) -> tensor<1x4x9x1xi32>

// @chain: two consecutive one-tile layers (4 x 4 and 2 x 4 cells) share one 8 x 8 array side
// by side: fc1's write programs both, fc2 finds them programmed.
func.func @chain(%x: tensor<1x4xf32>) -> tensor<1x2x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x4xf32>) -> tensor<1x4x!cimq.q<u4:0.5>>
  %w1 = cimq.const dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8> : tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w1 {layer = "fc1"} : (tensor<1x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  %r = cimq.requantize %a : (tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2x!cimq.q<u4:0.5>>
  %w2 = cimq.const dense<[[3, -3], [1, 2]]> : tensor<2x2xi8> : tensor<2x2x!cimq.q<s4n:0.25>>
  %b = cimq.matmul %r, %w2 {layer = "fc2"} : (tensor<1x2x!cimq.q<u4:0.5>>, tensor<2x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  func.return %b : tensor<1x2x!cimq.q<s32:0.125>>
}

// CHECK-LABEL: func.func @chain
// CHECK:       xbar.layer "fc1"
// CHECK:         xbar.program %{{.*}} {group = "[[G:pack[0-9]+]]", offset = array<i64: 0, 0>}
// CHECK:       xbar.layer "fc2"
// CHECK:         xbar.program %{{.*}} {group = "[[G]]", offset = array<i64: 0, 4>, shared}

// OFF-NOT:     blocks =
// OFF-NOT:     group = "pack
