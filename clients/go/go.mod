module github.com/kyu-rs/kyu/clients/go

go 1.19
