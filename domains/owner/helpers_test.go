package owner_test

import (
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

var (
	uuidA = uuid.MustParse("6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60")
	uuidB = uuid.MustParse("0b7e7f6a-2222-4c3d-8e9f-a0b1c2d3e4f5")

	t0 = time.Date(2024, 1, 15, 17, 0, 0, 123456789, time.UTC)
)

func cfgNamed(name string, id uuid.UUID, k domains.Clock) domains.Config {
	return domains.Config{Name: name, UUID: id, MemoryMiB: 256, VCPUs: 1, Machine: "pc", Clock: k}
}
