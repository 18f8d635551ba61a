// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8},xbar-batch-amortise' | filecheck %s
// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8}' | filecheck %s --check-prefix=PAPER

// A static weight's tiles are written once for the whole batch ({amortised}); the run-time
// written operand of an attention product differs per input and keeps one write per inference.

func.func @main(%x: tensor<1x6xf32>, %a: tensor<1x2x5x3xf32>, %b: tensor<1x2x3x5xf32>) -> (tensor<1x3x!cimq.q<s32:0.125>>, tensor<1x2x5x5x!cimq.q<s32:0.125>>) {
  %q = cimq.quantize %x : (tensor<1x6xf32>) -> tensor<1x6x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[1, -1, 2], [2, 3, 4], [0, 7, -7], [-7, 1, 5], [3, 3, 3], [-2, -4, 6]]> : tensor<6x3xi8> : tensor<6x3x!cimq.q<s4n:0.25>>
  %y = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x6x!cimq.q<u4:0.5>>, tensor<6x3x!cimq.q<s4n:0.25>>) -> tensor<1x3x!cimq.q<s32:0.125>>
  %qa = cimq.quantize %a : (tensor<1x2x5x3xf32>) -> tensor<1x2x5x3x!cimq.q<s8:0.5>>
  %qb = cimq.quantize %b : (tensor<1x2x3x5xf32>) -> tensor<1x2x3x5x!cimq.q<s8:0.25>>
  %s = cimq.matmul_act %qa, %qb {layer = "qk"} : (tensor<1x2x5x3x!cimq.q<s8:0.5>>, tensor<1x2x3x5x!cimq.q<s8:0.25>>) -> tensor<1x2x5x5x!cimq.q<s32:0.125>>
  func.return %y, %s : tensor<1x3x!cimq.q<s32:0.125>>, tensor<1x2x5x5x!cimq.q<s32:0.125>>
}

// CHECK:       xbar.layer "fc"
// CHECK:         %tile = xbar.program %cells[%h, %rt, %ct] {amortised} : !xbar.cells<1x6x6, c4> -> !xbar.tile<4x8, c4>
// CHECK:       xbar.layer "qk"
// CHECK-SAME:    dynamic
// CHECK:         %{{.*}} = xbar.program %{{.*}}[%{{.*}}] : !xbar.cells<2x3x20, c4> -> !xbar.tile<4x8, c4>
// CHECK-NOT:   amortised

// PAPER-NOT:   amortised
