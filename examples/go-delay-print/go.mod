module github.com/kyu-rs/kyu/examples/go-delay-print

go 1.19

require github.com/kyu-rs/kyu/clients/go v0.0.0

replace github.com/kyu-rs/kyu/clients/go => ../../clients/go
