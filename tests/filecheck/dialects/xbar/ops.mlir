// RUN: cimc-opt %s | filecheck %s
// RUN: cimc-opt %s | cimc-opt | filecheck %s
// RUN: cimc-opt %s --print-op-generic | cimc-opt | filecheck %s

// An xbar-level layer as written by xbar-tile (blobs need not be loaded to parse).
// CHECK-LABEL: func.func @layer
func.func @layer(%x: tensor<1x1x3x6x!cimq.q<u4:0.5>>, %w: tensor<1x6x3x!cimq.q<s4n:1.0>>) -> tensor<1x1x3x3xi32> {
  // CHECK: %[[ACC:.*]] = xbar.layer "fc"(%x, %w) {kind = "linear", mapping = "dc", m = 3 : i64, n = 6 : i64, P = 3 : i64, H = 1 : i64, w_bits = 4 : i64, a_bits = 4 : i64, a_signed = 0 : i64, slices = 1 : i64, row_tiles = 2 : i64, col_tiles = 1 : i64, chunks = 4 : i64, cell_bits = 4 : i64, dac_bits = 1 : i64}
  %acc = xbar.layer "fc"(%x, %w) {kind = "linear", mapping = "dc", m = 3 : i64, n = 6 : i64, P = 3 : i64, H = 1 : i64, w_bits = 4 : i64, a_bits = 4 : i64, a_signed = 0 : i64, slices = 1 : i64, row_tiles = 2 : i64, col_tiles = 1 : i64, chunks = 4 : i64, cell_bits = 4 : i64, dac_bits = 1 : i64} : (tensor<1x1x3x6x!cimq.q<u4:0.5>>, tensor<1x6x3x!cimq.q<s4n:1.0>>) -> tensor<1x1x3x3xi32> {
  ^bb0(%xa: tensor<1x1x3x6x!cimq.q<u4:0.5>>, %wa: tensor<1x6x3x!cimq.q<s4n:1.0>>):
    // CHECK: xbar.map %{{.*}} {w_bits = 4 : i64, a_bits = 4 : i64, a_signed = 0 : i64, slices = 1 : i64, mapping = "dc"} : (tensor<1x6x3x!cimq.q<s4n:1.0>>) -> (!xbar.cells<1x6x6, c4>, tensor<6x2xi64>, tensor<1x3xi64>)
    %mc, %mr, %mk = xbar.map %wa {w_bits = 4 : i64, a_bits = 4 : i64, a_signed = 0 : i64, slices = 1 : i64, mapping = "dc"} : (tensor<1x6x3x!cimq.q<s4n:1.0>>) -> (!xbar.cells<1x6x6, c4>, tensor<6x2xi64>, tensor<1x3xi64>)
    // CHECK: xbar.const #cimq.blob<"fc.cells", "00112233445566778899"> : !xbar.cells<1x6x6, c4>
    %cells = xbar.const #cimq.blob<"fc.cells", "00112233445566778899"> : !xbar.cells<1x6x6, c4>
    // CHECK: xbar.const dense<{{.*}}> : tensor<6x2xi64>
    %recomb = xbar.const dense<[[0, 1], [0, -1], [1, 1], [1, -1], [2, 1], [2, -1]]> : tensor<6x2xi64> : tensor<6x2xi64>
    %corr = xbar.const dense<0> : tensor<1x3xi64> : tensor<1x3xi64>
    // CHECK: xbar.offset %{{.*}} {a_bits = 4 : i64} : (tensor<1x1x3x6x!cimq.q<u4:0.5>>) -> tensor<1x1x3x6xi32>
    %xu = xbar.offset %xa {a_bits = 4 : i64} : (tensor<1x1x3x6x!cimq.q<u4:0.5>>) -> tensor<1x1x3x6xi32>
    // CHECK: xbar.alloc : !xbar.buf<1x6>
    %buf = xbar.alloc : !xbar.buf<1x6>
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c2 = arith.constant 2 : index
    %c4 = arith.constant 4 : index
    scf.for %h = %c0 to %c1 step %c1 {
      scf.for %rt = %c0 to %c2 step %c1 {
        scf.for %ct = %c0 to %c1 step %c1 {
          // CHECK: xbar.program %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : !xbar.cells<1x6x6, c4> -> !xbar.tile<4x8, c4>
          %tile = xbar.program %cells[%h, %rt, %ct] : !xbar.cells<1x6x6, c4> -> !xbar.tile<4x8, c4>
          scf.for %i = %c0 to %c4 step %c1 {
            // CHECK: xbar.plane %{{.*}}[%{{.*}}, %{{.*}}], %{{.*}} : tensor<1x1x3x6xi32> -> !xbar.plane<4, d1>
            %plane = xbar.plane %xu[%h, %rt], %i : tensor<1x1x3x6xi32> -> !xbar.plane<4, d1>
            // CHECK: xbar.cycle %{{.*}}, %{{.*}} : !xbar.tile<4x8, c4>, !xbar.plane<4, d1> -> !xbar.columns<8>
            %adc = xbar.cycle %tile, %plane : !xbar.tile<4x8, c4>, !xbar.plane<4, d1> -> !xbar.columns<8>
            // CHECK: xbar.shift_add %{{.*}}[%{{.*}}, %{{.*}}], %{{.*}}, %{{.*}} {dac_bits = 1 : i64} : !xbar.buf<1x6>, !xbar.columns<8>
            xbar.shift_add %buf[%h, %ct], %adc, %i {dac_bits = 1 : i64} : !xbar.buf<1x6>, !xbar.columns<8>
          } {xbar.loop = "chunks"}
        } {xbar.loop = "col_tiles"}
      } {xbar.loop = "row_tiles"}
    } {xbar.loop = "repeats"}
    // CHECK: xbar.recombine %{{.*}}, %{{.*}}, %{{.*}} : !xbar.buf<1x6>, tensor<6x2xi64>, tensor<1x3xi64> -> tensor<1x1x3x3xi32>
    %y = xbar.recombine %buf, %recomb, %corr : !xbar.buf<1x6>, tensor<6x2xi64>, tensor<1x3xi64> -> tensor<1x1x3x3xi32>
    // CHECK: xbar.yield %{{.*}} : tensor<1x1x3x3xi32>
    xbar.yield %y : tensor<1x1x3x3xi32>
  }
  func.return %acc : tensor<1x1x3x3xi32>
}

// CHECK-LABEL: func.func @host
func.func @host(%q: tensor<1x2x4x4x!cimq.q<s3:0.5>>, %w: tensor<2x9x2x!cimq.q<s4n:1.0>>) -> tensor<1x4x4x4x!cimq.q<s32:0.125>> {
  // CHECK: xbar.im2col
  %p = xbar.im2col %q {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x4x4x!cimq.q<s3:0.5>>) -> tensor<1x2x16x9x!cimq.q<s3:0.5>>
  // CHECK: xbar.matmul %{{.*}}, %{{.*}} layer "c1" kind "depthwise" w 4 a 3
  %m = xbar.matmul %p, %w layer "c1" kind "depthwise" w 4 a 3 : (tensor<1x2x16x9x!cimq.q<s3:0.5>>, tensor<2x9x2x!cimq.q<s4n:1.0>>) -> tensor<1x2x16x2xi32>
  // CHECK: xbar.col2im
  %y = xbar.col2im %m : (tensor<1x2x16x2xi32>) -> tensor<1x4x4x4x!cimq.q<s32:0.125>>
  func.return %y : tensor<1x4x4x4x!cimq.q<s32:0.125>>
}

// A stored operand with a zero point: xbar.matmul_dyn of a uint8 written operand (unsigned
// cells at 8 bits) and the correction op of the xbar level.
// CHECK-LABEL: func.func @zero_points
func.func @zero_points(%q: tensor<1x2x3x4x!cimq.q<u8:0.5:zp=7>>, %k: tensor<1x2x4x3x!cimq.q<u8:0.25:zp=125>>, %a: tensor<1x2x3x3xi32>) -> tensor<1x2x3x3xi32> {
  // CHECK: xbar.matmul_dyn %{{.*}}, %{{.*}} layer "qk" kind "matmul" w 8 a 8 : (tensor<1x2x3x4x!cimq.q<u8:0.5:zp=7>>, tensor<1x2x4x3x!cimq.q<u8:0.25:zp=125>>) -> tensor<1x2x3x3xi32>
  %s = xbar.matmul_dyn %q, %k layer "qk" kind "matmul" w 8 a 8 : (tensor<1x2x3x4x!cimq.q<u8:0.5:zp=7>>, tensor<1x2x4x3x!cimq.q<u8:0.25:zp=125>>) -> tensor<1x2x3x3xi32>
  // CHECK: xbar.zp_correct %{{.*}}, %{{.*}} {w_zp = 125 : i64} : (tensor<1x2x3x3xi32>, tensor<1x2x3x4x!cimq.q<u8:0.5:zp=7>>) -> tensor<1x2x3x3xi32>
  %y = xbar.zp_correct %a, %q {w_zp = 125 : i64} : (tensor<1x2x3x3xi32>, tensor<1x2x3x4x!cimq.q<u8:0.5:zp=7>>) -> tensor<1x2x3x3xi32>
  func.return %y : tensor<1x2x3x3xi32>
}
