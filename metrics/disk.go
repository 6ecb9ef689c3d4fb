package metrics

import "github.com/prometheus/client_golang/prometheus"

// DiskSpace is one measurement of the data volume (storage/badger's
// SpaceStatus, as the gauges need it).
type DiskSpace struct {
	Free    int64 // bytes available on the volume
	Reserve int64 // the ledger refuses new writes below it
	Floor   int64 // the ledger refuses every write below it
}

// NewDiskCollector returns a collector of the data volume's gauges, read at
// scrape time: iap_disk_free_bytes, iap_disk_reserve_bytes and
// iap_disk_floor_bytes. read must be quick (the ledger's last measurement).
// Alert before refusals start: free below twice the reserve.
func NewDiskCollector(read func() DiskSpace) prometheus.Collector {
	return &diskCollector{
		read:    read,
		free:    prometheus.NewDesc("iap_disk_free_bytes", "Bytes available on the data volume (statfs), as last measured.", nil, nil),
		reserve: prometheus.NewDesc("iap_disk_reserve_bytes", "Free space below which new writes (accounts, holds, recharges, settings) are refused; captures, cancels and reads go on.", nil, nil),
		floor:   prometheus.NewDesc("iap_disk_floor_bytes", "Free space Badger may still need for its flushes, compactions and the journal's checkpoint; below it every write is refused and checkpoints pause.", nil, nil),
	}
}

type diskCollector struct {
	read                 func() DiskSpace
	free, reserve, floor *prometheus.Desc
}

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.free
	ch <- c.reserve
	ch <- c.floor
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.read()
	ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(d.Free))
	ch <- prometheus.MustNewConstMetric(c.reserve, prometheus.GaugeValue, float64(d.Reserve))
	ch <- prometheus.MustNewConstMetric(c.floor, prometheus.GaugeValue, float64(d.Floor))
}
