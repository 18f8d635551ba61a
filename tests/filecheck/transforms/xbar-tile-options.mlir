// Bad pass options are one diagnostic line, in cimc-opt and in the stock xdsl-opt (plug-in).
// RUN: not cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=0}' 2>&1 | filecheck %s --check-prefix=ROWS
// RUN: not xdsl-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=0}' 2>&1 | filecheck %s --check-prefix=ROWS
// RUN: not xdsl-opt %s -p 'xbar-tile{mapping=zz}' 2>&1 | filecheck %s --check-prefix=MAP
// RUN: not xdsl-opt %s -p 'xbar-set-bits{a-bits=9}' 2>&1 | filecheck %s --check-prefix=BITS
// RUN: not cimc-opt %s -p 'xbar-tile{' 2>&1 | filecheck %s --check-prefix=SYNTAX

// ROWS-NOT: Traceback
// ROWS: error: xbar-tile{rows=0}: rows must be an integer >= 1
// ROWS-NOT: Traceback
// MAP: error: xbar-tile{mapping='zz'}: mapping must be one of dc, dr, of
// BITS: error: xbar-set-bits{a-bits=9}: a-bits must be an integer in 0..8
// SYNTAX: error: -p 'xbar-tile{': invalid pass pipeline: Expected argument name here at column 11

func.func @main(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  func.return %x : tensor<1x4xf32>
}
