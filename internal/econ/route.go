package econ

import (
	"cmp"
	"slices"
)

// offer is one online provider's bid in a market for an epoch.
type offer struct {
	provider int    // index in the simulation's providers
	price    uint64 // µUSD per million completion tokens
	capacity uint64 // completion tokens it can generate this epoch
}

// willing is how much of demand accepts price p: all of it up to the
// all-pay price, none from the none-pay price, linearly in between.
func (m *Market) willing(demand, p uint64) uint64 {
	switch {
	case p <= m.AllPayMicroUSD:
		return demand
	case p >= m.NonePayMicroUSD:
		return 0
	}
	return mulDiv(demand, m.NonePayMicroUSD-p, m.NonePayMicroUSD-m.AllPayMicroUSD)
}

// route fills a market's demand from the cheapest offers up, the way a
// price-ordered scheduler would over an epoch: at each price, the demand
// still unserved that accepts the price goes to the providers asking it,
// shared in proportion to their capacity (a remainder token each to the
// earliest). A consumer who accepts a price takes any cheaper one, so the
// demand served below a price counts against what accepts it. It returns
// the tokens each offer serves, in the order of offers.
func route(m *Market, demand uint64, offers []offer) []uint64 {
	alloc := make([]uint64, len(offers))
	order := make([]int, len(offers))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(offers[a].price, offers[b].price), cmp.Compare(offers[a].provider, offers[b].provider))
	})
	var served uint64
	for lo := 0; lo < len(order); {
		hi := lo
		var capacity uint64
		for hi < len(order) && offers[order[hi]].price == offers[order[lo]].price {
			capacity = satAdd(capacity, offers[order[hi]].capacity)
			hi++
		}
		want := m.willing(demand, offers[order[lo]].price)
		if want > served {
			take := min(want-served, capacity)
			var given uint64
			for _, i := range order[lo:hi] {
				alloc[i] = mulDiv(take, offers[i].capacity, capacity)
				given += alloc[i]
			}
			for _, i := range order[lo:hi] {
				if given == take {
					break
				}
				if alloc[i] < offers[i].capacity {
					alloc[i]++
					given++
				}
			}
			served += take
		}
		lo = hi
	}
	return alloc
}
