package main

func extra() {}
