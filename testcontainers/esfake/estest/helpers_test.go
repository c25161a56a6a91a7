package estest_test

import "github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"

func estestConfig(url, caPEM, apiKey string) esclient.Config {
	return esclient.Config{URLs: []string{url}, CACert: caPEM, APIKey: apiKey}
}
